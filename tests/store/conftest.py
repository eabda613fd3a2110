"""Store fixtures: a fresh guard database per test on SQLite and on PostgreSQL.

PostgreSQL runs at 127.0.0.1:5432 (trust auth, database ``test``); each test gets its own
schema (via ``search_path``), dropped afterwards. Without a reachable server the PostgreSQL
cases are skipped with the reason, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest

from mlflow_guard.core.audit import AuditEvent
from mlflow_guard.store import GuardStore

PG_BASE = os.environ.get("MLFLOW_GUARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin() -> object | None:
    """A psycopg2 connection in autocommit, or None when PostgreSQL is unreachable."""
    try:
        import psycopg2
    except ImportError:
        return None
    try:
        conn = psycopg2.connect(PG_BASE, connect_timeout=3)
    except psycopg2.OperationalError:
        return None
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[object]:
    """Admin connection to the test PostgreSQL (skip, or fail under CI=true, if unreachable)."""
    conn = _pg_admin()
    if conn is None:
        msg = f"PostgreSQL unreachable at {PG_BASE} (set MLFLOW_GUARD_TEST_PG to another URI)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; CI=true requires it")
        pytest.skip(msg)
    yield conn
    conn.close()  # type: ignore[attr-defined]


SchemaFactory = Callable[[], str]


@pytest.fixture
def pg_uri_factory(pg_admin: object) -> Iterator[SchemaFactory]:
    """Make URIs of fresh, empty PostgreSQL schemas; drops them after the test."""
    made: list[str] = []

    def make() -> str:
        schema = f"guard_test_{secrets.token_hex(6)}"
        with pg_admin.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(f"CREATE SCHEMA {schema}")
        made.append(schema)
        return f"{PG_BASE}?options=-csearch_path%3D{schema}"

    yield make
    with pg_admin.cursor() as cur:  # type: ignore[attr-defined]
        for schema in made:
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_uri(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """URI of an empty guard database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/guard.db"
    factory: SchemaFactory = request.getfixturevalue("pg_uri_factory")
    return factory()


@pytest.fixture
def store(db_uri: str) -> Iterator[GuardStore]:
    """A migrated store on ``db_uri``."""
    s = GuardStore(db_uri)
    s.migrate()
    yield s
    s.dispose()


def event(i: int, *, outcome: str = "allow") -> AuditEvent:
    """A distinct, realistic audit event."""
    return AuditEvent(
        user=f"user{i % 3}",
        action="read" if i % 2 else "log",
        resource=f"experiment:{i}",
        outcome=outcome,  # type: ignore[arg-type]
        reasons=[f"rule {i}"] if outcome == "allow" else ["no rule grants it"],
        request_id=f"req-{i}",
    )
