"""Schema migrations (alembic, shipped in :mod:`mlflow_guard.store.migrations`).

Run inside the caller's write transaction: on PostgreSQL a transaction-level advisory lock makes
replicas that start together migrate one after the other; on SQLite ``BEGIN IMMEDIATE`` does.
"""

from __future__ import annotations

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


def enable_wal(engine: Engine) -> None:
    """Switch a SQLite database to write-ahead logging (persistent; readers never block)."""
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.execute("PRAGMA journal_mode=WAL")
