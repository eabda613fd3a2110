"""Engine construction for SQLite and PostgreSQL, with the transaction modes the store needs.

SQLite: the driver's own transaction handling is switched off and the store emits ``BEGIN
IMMEDIATE`` for writes (so two writers serialize on the database lock before reading the chain
head). PostgreSQL: writes lock the chain-head row with ``SELECT … FOR UPDATE``. Single-statement
reads run without an explicit transaction (PostgreSQL: autocommit), which saves two round trips
on the per-request reads.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from mlflow_guard.store.errors import StoreError

WRITE = "guard_write"
READ = "guard_read"
READ_OPTIONS: dict[str, dict[str, object]] = {
    "sqlite": {READ: True},
    "postgresql": {"isolation_level": "AUTOCOMMIT"},
}
"""Execution options for single-statement reads: no BEGIN/COMMIT round trips."""
SUPPORTED = ("sqlite", "postgresql")
SQLITE_BUSY_TIMEOUT_S = 15.0
PG_CONNECT_TIMEOUT_S = 5
PG_LOCK_TIMEOUT_MS = 10_000
PG_STATEMENT_TIMEOUT_MS = 30_000


def parse_uri(database_uri: str) -> URL:
    """Parse and check a database URI.

    Raises:
        StoreError: unparsable, or a database other than SQLite or PostgreSQL.
    """
    try:
        url = make_url(database_uri)
    except (ArgumentError, ValueError) as e:
        raise StoreError(
            "guard database URI is not valid",
            details=[f"expected e.g. sqlite:///guard.db or postgresql://user@host:5432/db; {e}"],
            hint="fix storage.database_uri in guard.yaml or --database-uri",
        ) from e
    if url.get_backend_name() not in SUPPORTED:
        raise StoreError(
            f"unsupported guard database {url.get_backend_name()!r}",
            details=[f"expected one of: {', '.join(SUPPORTED)}"],
            hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
        )
    if url.drivername == "postgresql":
        url = url.set(drivername=f"postgresql+{_pg_driver()}")
    return url


def _pg_driver() -> str:
    """The installed PostgreSQL driver (psycopg2 first: what MLflow uses; else psycopg 3)."""
    import importlib.util

    for name, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(name) is not None:
            return driver
    return "psycopg2"


def _pg_options(url: URL) -> str:
    """Server settings for every session: bounded waits, so a stuck lock holder or a hung
    database fails the request (503) instead of hanging it. Keeps ``options`` from the URI."""
    given = url.query.get("options", "")
    given = " ".join(given) if isinstance(given, tuple) else given
    ours = f"-c lock_timeout={PG_LOCK_TIMEOUT_MS} -c statement_timeout={PG_STATEMENT_TIMEOUT_MS}"
    return f"{given} {ours}".strip()


def make_engine(url: URL) -> Engine:
    """Create the engine (no connection is opened here)."""
    kwargs: dict[str, Any] = {"future": True}
    sqlite = url.get_backend_name() == "sqlite"
    if sqlite:
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    else:
        kwargs.update(pool_size=5, max_overflow=10, pool_recycle=1800)
        if url.get_driver_name() in ("psycopg2", "psycopg"):
            kwargs["connect_args"] = {
                "connect_timeout": PG_CONNECT_TIMEOUT_S,
                "options": _pg_options(url),
            }
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as e:
        raise StoreError(
            f"cannot create a database engine for {url.render_as_string(hide_password=True)}",
            details=[str(e)],
            hint="install the database driver (psycopg2-binary for PostgreSQL) or fix the URI",
        ) from e
    if sqlite:
        _sqlite_transactions(engine)
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        opts = conn.get_execution_options()
        if opts.get(READ):
            return  # one SELECT in autocommit mode is atomic on its own
        conn.exec_driver_sql("BEGIN IMMEDIATE" if opts.get(WRITE) else "BEGIN DEFERRED")
