"""Guard state store: API tokens, revision counter, tamper-evident audit chain (SQLite/PostgreSQL).

Usage::

    store = GuardStore("sqlite:///guard.db")   # no I/O yet
    store.migrate()                            # alembic upgrade head; idempotent
    token_id, secret = store.create_token("ci", expires_at=None)
    store.verify_token(secret)                 # TokenInfo or None
    store.append_audit(AuditEvent(...))        # StoreError on any failure -> deny with 503
"""

from __future__ import annotations

from mlflow_guard.store.errors import StoreError
from mlflow_guard.store.guard_store import GuardStore
from mlflow_guard.store.tokens import TokenInfo

__all__ = ["GuardStore", "StoreError", "TokenInfo"]
