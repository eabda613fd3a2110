"""The test PostgreSQL (127.0.0.1:5432): one connection helper with the skip/fail rule.

Tests of the production configuration skip with the reason when PostgreSQL is unreachable,
except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

PG = os.environ.get("MLFLOW_GUARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_connection(uri: str = PG) -> Any:
    """An autocommit psycopg2 connection to ``uri``; skip (or fail when CI=true) if unreachable."""
    import psycopg2

    try:
        conn = psycopg2.connect(uri, connect_timeout=3)
    except psycopg2.OperationalError as e:
        msg = f"PostgreSQL unreachable at {uri}: {e}".strip()
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (CI=true requires it)")
        pytest.skip(msg)
    conn.autocommit = True
    return conn


@contextmanager
def temporary_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the test server for the ``with`` block; its URI.

    Dropped afterwards even when connections are still open (``WITH (FORCE)``).
    """
    conn = admin_connection(PG_ADMIN)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
