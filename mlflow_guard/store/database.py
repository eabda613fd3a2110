"""Database plumbing of the guard store: engine, transactions, error mapping, migrations."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from mlflow_guard.store import engine as _engine
from mlflow_guard.store import migrate as _migrate
from mlflow_guard.store.errors import StoreError

_T = TypeVar("_T")


class Database:
    """One SQLite or PostgreSQL database; every failure becomes a :class:`StoreError`.

    Args:
        database_uri: ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``.

    Raises:
        StoreError: the URI is invalid or names an unsupported database. No connection is made.
    """

    def __init__(self, database_uri: str) -> None:
        self._url = _engine.parse_uri(database_uri)
        self._engine = _engine.make_engine(self._url)

    @property
    def url(self) -> str:
        """The database URI with any password hidden."""
        return self._url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._url.get_backend_name()

    def dispose(self) -> None:
        """Close pooled connections."""
        self._engine.dispose()

    # -- plumbing ---------------------------------------------------------------------------

    def _fail(self, what: str, e: BaseException) -> StoreError:
        detail = str(getattr(e, "orig", None) or e).strip().splitlines()
        hint = "check that the guard database is reachable and writable"
        if "no such table" in str(e) or "does not exist" in str(e):
            hint = "the guard schema is missing: run the server once or `GuardStore.migrate()`"
        return StoreError(
            f"guard database {self.url}: cannot {what}",
            details=[f"{type(e).__name__}: {detail[0] if detail else ''}"],
            hint=hint,
        )

    def _run(self, what: str, fn: Callable[[Connection], _T], *, write: bool) -> _T:
        """Run ``fn`` in one transaction (writes) or as autocommit single-statement reads."""
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(**{_engine.WRITE: True})
                else:
                    conn.execution_options(**_engine.READ_OPTIONS[self.dialect])
                with conn.begin():
                    return fn(conn)
        except StoreError:
            raise
        except (SQLAlchemyError, OSError) as e:
            raise self._fail(what, e) from e

    # -- schema -----------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest version (idempotent; safe with replicas racing).

        Raises:
            StoreError: the database cannot be reached or written.
        """
        if self.dialect == "sqlite":
            try:
                _migrate.enable_wal(self._engine)
            except (SQLAlchemyError, OSError) as e:
                raise self._fail("open the database", e) from e
        dialect = self.dialect
        self._run("migrate the schema", lambda c: _migrate.upgrade(c, dialect), write=True)
