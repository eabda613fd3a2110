"""Policy section ``storage``: where guard keeps its own state, and audit checkpoints."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field

from mlflow_guard.core.policy._types import Duration, StrictModel


class StoragePolicy(StrictModel):
    """Guard state database (SQLite by default, PostgreSQL in production) and audit checkpoints.

    Attributes:
        database_uri: ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``.
        audit_key: private key (purpose ``audit``) the server signs audit checkpoints with;
            relative paths resolve from the policy file's folder. Without it, no checkpoints
            are written and the chain is only internally consistent.
        audit_key_passphrase_env: environment variable holding that key's passphrase.
        checkpoint_every: write a signed checkpoint every N audit entries (0: never by count).
        checkpoint_interval: and at least this often while entries are appended.
    """

    database_uri: str = Field(default="sqlite:///guard.db", min_length=1)
    audit_key: Path | None = None
    audit_key_passphrase_env: str | None = None
    checkpoint_every: int = Field(default=1000, ge=0)
    checkpoint_interval: Duration | None = Field(default=timedelta(hours=1))
