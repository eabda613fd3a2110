"""SQLAlchemy Core tables of the guard state (all prefixed ``guard_``).

Kept in step with the alembic migrations in :mod:`mlflow_guard.store.migrations`; the
migrations, not :data:`METADATA`, create the schema.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text

METADATA = MetaData()

revision = Table(
    "guard_revision",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", BigInteger, nullable=False),
)

tokens = Table(
    "guard_tokens",
    METADATA,
    Column("token_id", String(32), primary_key=True),
    Column("user_name", String(256), nullable=False, index=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("description", Text, nullable=False),
)

audit_head = Table(
    "guard_audit_head",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

audit = Table(
    "guard_audit",
    METADATA,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", String(40), nullable=False),
    Column("user_name", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("resource", Text, nullable=False),
    Column("outcome", String(8), nullable=False),
    Column("reasons", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

checkpoints = Table(
    "guard_audit_checkpoints",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("envelope", Text, nullable=False),
)
