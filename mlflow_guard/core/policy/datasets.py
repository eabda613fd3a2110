"""Policy section ``datasets``: who signs dataset versions and how data changes are validated."""

from __future__ import annotations

from pydantic import Field

from mlflow_guard.core.policy._types import StrictModel


class ValidationRule(StrictModel):
    """Checks applied to one tabular dataset (CSV or Parquet) when it changes."""

    path: str = Field(min_length=1)
    label_column: str | None = None
    max_label_shift: float | None = Field(default=None, ge=0, le=1)
    max_psi: float | None = Field(default=None, ge=0)
    max_duplicate_share: float | None = Field(default=None, ge=0, le=1)
    max_changed_share: float | None = Field(default=None, ge=0, le=1)
    max_null_share: float | None = Field(default=None, ge=0, le=1)
    columns: dict[str, str] | None = None


class DatasetPolicy(StrictModel):
    """Dataset signing and validation."""

    signers: list[str] = Field(default_factory=list)
    validate_: list[ValidationRule] = Field(default_factory=list, alias="validate")
