"""Policy section ``storage``: where guard keeps its own state."""

from __future__ import annotations

from pydantic import Field

from mlflow_guard.core.policy._types import StrictModel


class StoragePolicy(StrictModel):
    """Guard state database (SQLite by default, PostgreSQL in production)."""

    database_uri: str = Field(default="sqlite:///guard.db", min_length=1)
