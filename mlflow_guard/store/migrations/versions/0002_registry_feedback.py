"""Registry approvals/promotions and feedback replay store, quarantine, batches, accepted records.

Before this revision these tables were created with ``create_all`` on first use; a database from
then already has some or all of them, identical to the definitions below, so each table (and its
indexes) is created only when it is missing.

Revision ID: 0002_registry_feedback
Revises: 0001_initial
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

revision = "0002_registry_feedback"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _tables() -> list[tuple[str, list[SchemaItem], list[tuple[str, list[str]]]]]:
    """``(name, columns and constraints, indexes)`` of every table of this revision."""
    return [
        (
            "guard_approvals",
            [
                sa.Column("id", _ID, primary_key=True),
                sa.Column("model", sa.String(256), nullable=False),
                sa.Column("version", sa.String(32), nullable=False),
                sa.Column("target", sa.String(300), nullable=False),
                sa.Column("approver", sa.String(256), nullable=False),
                sa.Column("seq", sa.Integer, nullable=False),
                sa.Column("kind", sa.String(16), nullable=False),
                sa.Column("decision", sa.String(16), nullable=False),
                sa.Column("root_digest", sa.String(64), nullable=False),
                sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
                sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
                sa.Column("key_id", sa.String(64), nullable=True),
                sa.Column("comment", sa.Text, nullable=False),
                sa.Column("envelope", sa.Text, nullable=True),
                sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
                sa.Column("recorded_by", sa.String(256), nullable=False),
                sa.UniqueConstraint(
                    "model", "version", "target", "approver", "seq", name="uq_guard_approval"
                ),
            ],
            [],
        ),
        (
            "guard_promotions",
            [
                sa.Column("id", _ID, primary_key=True),
                sa.Column("model", sa.String(256), nullable=False),
                sa.Column("version", sa.String(32), nullable=False),
                sa.Column("target", sa.String(300), nullable=False),
                sa.Column("attempt", sa.Integer, nullable=False),
                sa.Column("state", sa.String(16), nullable=False),
                sa.Column("tag_value", sa.Text, nullable=True),
                sa.Column("comment", sa.Text, nullable=False),
                sa.Column("requested_by", sa.String(256), nullable=False),
                sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
                sa.Column("closed_by", sa.String(256), nullable=True),
                sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
                sa.UniqueConstraint(
                    "model", "version", "target", "attempt", name="uq_guard_promotion"
                ),
            ],
            [],
        ),
        (
            "guard_registry_web_secret",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                sa.Column("secret", sa.String(64), nullable=False),
            ],
            [],
        ),
        (
            "guard_feedback_seen",
            [
                sa.Column("source", sa.String(128), primary_key=True),
                sa.Column("record_id", sa.String(128), primary_key=True),
                sa.Column("record_ts", sa.BigInteger, nullable=False),
                sa.Column("seen_at", sa.Float, nullable=False),
                sa.Column("batch_id", sa.String(64), nullable=False),
            ],
            [("ix_guard_feedback_seen_seen_at", ["seen_at"])],
        ),
        (
            "guard_feedback_batches",
            [
                sa.Column("batch_id", sa.String(64), primary_key=True),
                sa.Column("source", sa.String(128), primary_key=True),
                sa.Column("records", sa.Integer, nullable=False),
                sa.Column("label_counts", sa.Text, nullable=False),
                sa.Column("created_at", sa.Float, nullable=False),
            ],
            [("ix_guard_feedback_batches_created_at", ["created_at"])],
        ),
        (
            "guard_feedback_quarantine",
            [
                sa.Column("qid", sa.String(64), primary_key=True),
                sa.Column("batch_id", sa.String(64), nullable=False),
                sa.Column("line", sa.Integer, nullable=False),
                sa.Column("reason", sa.String(32), nullable=False),
                sa.Column("message", sa.Text, nullable=False),
                sa.Column("detail", sa.Text, nullable=False),
                sa.Column("raw", sa.LargeBinary, nullable=False),
                sa.Column("sha256", sa.String(64), nullable=False),
                sa.Column("received_at", sa.Float, nullable=False),
                sa.Column("status", sa.String(16), nullable=False),
                sa.Column("released_by", sa.String(256)),
                sa.Column("released_at", sa.Float),
            ],
            [
                ("ix_guard_feedback_quarantine_batch_id", ["batch_id"]),
                ("ix_guard_feedback_quarantine_status", ["status"]),
            ],
        ),
        (
            "guard_feedback_accepted",
            [
                sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("source", sa.String(128), nullable=False),
                sa.Column("record_id", sa.String(128), nullable=False),
                sa.Column("batch_id", sa.String(64), nullable=False),
                sa.Column("raw", sa.LargeBinary, nullable=False),
                sa.Column("accepted_at", sa.Float, nullable=False),
                sa.UniqueConstraint(
                    "source", "record_id", name="uq_guard_feedback_accepted_record"
                ),
            ],
            [("ix_guard_feedback_accepted_batch_id", ["batch_id"])],
        ),
    ]


def upgrade() -> None:
    """Create each table and index that does not exist yet."""
    insp = sa.inspect(op.get_bind())
    existing = set(insp.get_table_names())
    for name, items, indexes in _tables():
        if name not in existing:
            op.create_table(name, *items)
            have: set[str] = set()
        else:
            have = {str(ix["name"]) for ix in insp.get_indexes(name)}
        for ix_name, cols in indexes:
            if ix_name not in have:
                op.create_index(ix_name, name, cols)


def downgrade() -> None:
    """Drop the tables of this revision (their data is lost)."""
    for name, _, _ in reversed(_tables()):
        op.drop_table(name)
