"""Alembic environment of the guard state schema (run through :meth:`GuardStore.migrate`).

The caller passes an open connection (already inside a transaction that holds the migration
lock) in ``config.attributes["connection"]``. The version table is ``guard_alembic_version`` so
that guard can share a database with MLflow's own alembic-managed tables.
"""

from __future__ import annotations

from alembic import context

VERSION_TABLE = "guard_alembic_version"

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
