"""Policy section ``scan``: what the model-file scanner allows beyond its defaults.

Example::

    scan:
      allow_imports: [mypackage.features.*, mypackage.model.score]
      max_bytes: 34359738368   # 32 GiB per (decompressed) stream

Entries use the allowlist syntax of :mod:`mlflow_guard.core.scan.allowlist`. Entries that the
hard denylist forbids (``os.*``, ``builtins.eval``, ``numpy.load``, ...) are configuration errors.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from mlflow_guard.core.errors import PolicyError
from mlflow_guard.core.policy._types import StrictModel
from mlflow_guard.core.scan.allowlist import Allowlist
from mlflow_guard.core.scan.scanner import DEFAULT_MAX_BYTES


class ScanPolicy(StrictModel):
    """Extra allowed imports and limits for model-file scanning."""

    allow_imports: list[str] = Field(default_factory=list)
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, gt=0)

    @field_validator("allow_imports")
    @classmethod
    def _entries(cls, v: list[str]) -> list[str]:
        try:
            Allowlist.default().extend(v)
        except PolicyError as e:
            raise ValueError(e.summary) from e
        return v

    def allowlist(self) -> Allowlist:
        """The default allowlist extended with :attr:`allow_imports`."""
        return Allowlist.default().extend(self.allow_imports)
