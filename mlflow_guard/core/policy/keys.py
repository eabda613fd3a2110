"""Policy section ``keys`` and ``revoked``: the trust store's source."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import Field, field_validator

from mlflow_guard.core.policy._types import Purpose, StrictModel


class KeyEntry(StrictModel):
    """A trusted public key.

    Attributes:
        id: a short name used in the policy (``ci``, ``bob``).
        public_key: PEM file, relative to the policy file's folder.
        purposes: what this key may sign.
        not_after: the key verifies nothing after this instant (timezone-aware or UTC).
    """

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.@-]+$")
    public_key: Path
    purposes: list[Purpose] = Field(min_length=1)
    not_after: datetime | None = None

    @field_validator("purposes")
    @classmethod
    def _unique(cls, v: list[Purpose]) -> list[Purpose]:
        if len(set(v)) != len(v):
            raise ValueError("purposes must not repeat")
        return v
