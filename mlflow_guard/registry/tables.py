"""SQLAlchemy tables ``guard_approvals`` and ``guard_promotions`` (alembic revision 0002).

Unique constraints carry the concurrency guarantees, not a replica's memory:

* ``guard_approvals``: ``(model, version, target, approver, seq)`` — ``seq`` is the number of
  earlier decisions by the same approver on the same version and target, so two replicas that
  record the same approver's decision at once collide and one of them is refused as duplicate.
* ``guard_promotions``: one row per ``(model, version, target, attempt)``; a promotion is applied
  by the single ``UPDATE … WHERE state = 'pending'`` that succeeds.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

METADATA = MetaData()

approvals = Table(
    "guard_approvals",
    METADATA,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("model", String(256), nullable=False),
    Column("version", String(32), nullable=False),
    Column("target", String(300), nullable=False),
    Column("approver", String(256), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("root_digest", String(64), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("key_id", String(64), nullable=True),
    Column("comment", Text, nullable=False),
    Column("envelope", Text, nullable=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("recorded_by", String(256), nullable=False),
    UniqueConstraint("model", "version", "target", "approver", "seq", name="uq_guard_approval"),
)

promotions = Table(
    "guard_promotions",
    METADATA,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("model", String(256), nullable=False),
    Column("version", String(32), nullable=False),
    Column("target", String(300), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("tag_value", Text, nullable=True),
    Column("comment", Text, nullable=False),
    Column("requested_by", String(256), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("closed_by", String(256), nullable=True),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("model", "version", "target", "attempt", name="uq_guard_promotion"),
)

web_secret = Table(
    "guard_registry_web_secret",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("secret", String(64), nullable=False),
)
