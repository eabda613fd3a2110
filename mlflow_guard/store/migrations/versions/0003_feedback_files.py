"""Committed state of each feedback dataset file (the CLI's destination).

One row per dataset file: its size and the sha256 of its last bytes when the last transaction
that appended to it committed. Written in the same transaction as the replay-store claims, so
bytes found past that size are an append whose commit failed (see
:mod:`mlflow_guard.feedback.repair`). No database had this table before this revision.

Revision ID: 0003_feedback_files
Revises: 0002_registry_feedback
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_feedback_files"
down_revision = "0002_registry_feedback"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``guard_feedback_files``."""
    op.create_table(
        "guard_feedback_files",
        sa.Column("dataset_key", sa.String(64), primary_key=True),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("tail_len", sa.Integer, nullable=False),
        sa.Column("tail_sha256", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop ``guard_feedback_files`` (the next ingest adopts each file's size again)."""
    op.drop_table("guard_feedback_files")
