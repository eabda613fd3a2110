"""Schema migrations (alembic, shipped in :mod:`mlflow_guard.store.migrations`).

Run inside the caller's write transaction: on PostgreSQL a transaction-level advisory lock makes
replicas that start together migrate one after the other; on SQLite ``BEGIN IMMEDIATE`` does.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Connection, Engine

MIGRATION_LOCK_KEY = 0x6D6C67756172  # "mlguar": pg_advisory_xact_lock key for migrations
SCRIPTS = Path(__file__).parent / "migrations"


def upgrade(conn: Connection, dialect: str) -> None:
    """``alembic upgrade head`` on ``conn`` (already in a transaction), under the lock."""
    from alembic import command
    from alembic.config import Config

    if dialect == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def enable_wal(engine: Engine, *, wait_s: float = 30.0) -> None:
    """Switch a SQLite database to write-ahead logging (persistent; readers never block).

    Nothing to do when it is in WAL mode already. Switching needs the database to itself and
    SQLite answers "database is locked" without waiting while another process migrates it, so
    this retries for up to ``wait_s`` seconds.
    """
    import sqlite3

    deadline = time.monotonic() + wait_s
    while True:
        try:
            with engine.connect() as conn:
                raw = conn.connection.dbapi_connection
                assert raw is not None
                mode = raw.execute("PRAGMA journal_mode").fetchone()
                if mode is not None and str(mode[0]).lower() == "wal":
                    return
                raw.execute("PRAGMA journal_mode=WAL")
                return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def upgrade_engine(engine: Engine, *, write_options: dict[str, object] | None = None) -> None:
    """``alembic upgrade head`` in one write transaction of ``engine`` (for stores that share the
    guard database: registry records, feedback). Replicas racing are serialised by the lock.

    Args:
        engine: the guard database engine.
        write_options: execution options that make the transaction a write (``BEGIN
            IMMEDIATE`` on SQLite) for engines that choose it per connection.
    """
    with engine.connect() as conn:
        if write_options:
            conn = conn.execution_options(**write_options)
        with conn.begin():
            upgrade(conn, engine.dialect.name)
