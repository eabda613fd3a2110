"""Alembic owns every guard table: the migrations equal the table definitions, and a database
whose registry/feedback tables were made by ``create_all`` (before revision 0002) upgrades with
its rows intact — on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from mlflow_guard.feedback import store as feedback_store
from mlflow_guard.feedback.store import FeedbackStore
from mlflow_guard.registry import tables as registry_tables
from mlflow_guard.registry.records import RegistryRecords
from mlflow_guard.store import GuardStore, migrate
from mlflow_guard.store import tables as store_tables
from mlflow_guard.store.engine import parse_uri

HEAD = "0003_feedback_files"
NEWER_TABLES = {"guard_feedback_files"}  # added by a migration after the create_all era


def _all_tables() -> sa.MetaData:
    md = sa.MetaData()
    for source in (store_tables.METADATA, registry_tables.METADATA, feedback_store.metadata):
        for t in source.tables.values():
            t.to_metadata(md)
    return md


def _engine(uri: str) -> sa.Engine:
    return sa.create_engine(parse_uri(uri))


def test_migrations_create_exactly_the_defined_tables(db_uri: str) -> None:
    GuardStore(db_uri).migrate()
    eng = _engine(db_uri)
    try:
        with eng.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": "guard_alembic_version"}
            )
            diff = compare_metadata(ctx, _all_tables())
            version = conn.execute(sa.text("SELECT version_num FROM guard_alembic_version")).all()
    finally:
        eng.dispose()
    assert diff == [], diff
    assert [tuple(r) for r in version] == [(HEAD,)]


def test_feedback_and_registry_stores_migrate_a_fresh_database(db_uri: str) -> None:
    FeedbackStore(db_uri).dispose()
    RegistryRecords(db_uri).engine.dispose()
    eng = _engine(db_uri)
    try:
        names = set(sa.inspect(eng).get_table_names())
    finally:
        eng.dispose()
    assert set(_all_tables().tables) <= names
    assert "guard_alembic_version" in names


def test_a_create_all_database_upgrades_with_rows_intact(db_uri: str) -> None:
    """The state a 0001 database had when the stores used create_all: tables exist, no 0002."""
    eng = _engine(db_uri)
    try:
        with eng.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(migrate.SCRIPTS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001_initial")
            feedback_store.metadata.create_all(
                conn,
                tables=[
                    t for n, t in feedback_store.metadata.tables.items() if n not in NEWER_TABLES
                ],
            )
            registry_tables.METADATA.create_all(conn)
            conn.execute(
                feedback_store.seen.insert(),
                {
                    "source": "web",
                    "record_id": "r1",
                    "record_ts": 1,
                    "seen_at": 2.0,
                    "batch_id": "b1",
                },
            )
        FeedbackStore(db_uri).dispose()  # runs 0002 on the existing tables, then 0003
        with eng.connect() as conn:
            rows = conn.execute(sa.select(feedback_store.seen.c.record_id)).all()
            version = conn.execute(sa.text("SELECT version_num FROM guard_alembic_version")).all()
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": "guard_alembic_version"}
            )
            diff = compare_metadata(ctx, _all_tables())
    finally:
        eng.dispose()
    assert [r[0] for r in rows] == ["r1"]
    assert [tuple(r) for r in version] == [(HEAD,)]
    assert diff == [], diff
