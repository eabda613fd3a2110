"""Policy section ``datasets``: who signs dataset versions and how data changes are validated.

Example::

    datasets:
      signers: [data-ci]
      validate:
        - path: data/train.csv
          label_column: label
          max_label_shift: 0.05      # Jensen–Shannon distance (base 2) vs the previous commit
          max_psi: 0.1               # population stability index of the label distribution
          max_duplicate_share: 0.05  # share of rows that repeat an earlier row
          max_changed_share: 0.05    # share of the previous rows modified or removed
          max_null_share: 0.01       # per column
          columns: {age: int, income: float, city: string, label: int}
          ranges: {age: [0, 120]}
          categories: {city: [Paris, Lyon]}
          baseline:                  # also against a reviewed version: drift over many commits
            ref: data-v1             # git tag, branch or commit
            max_label_shift: 0.1
            max_changed_share: 0.2
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlflow_guard.core.policy._types import StrictModel

ColumnType = Literal["int", "float", "number", "string", "bool", "datetime", "any"]

_REF_FORBIDDEN = set(" \t\n\r:~^?*[\\")


class BaselineRule(StrictModel):
    """Drift checks against a fixed, reviewed version of the dataset.

    Comparing each commit with the previous one alone lets poisoning through in slices: ten
    commits flipping 4 % of the labels each stay under a 5 % per-commit limit. These limits
    bound what changed since ``ref`` in total.

    Attributes:
        ref: git revision holding the reviewed version (a tag such as ``data-v1``, a branch or
            a commit); it must resolve in the repository, or validation fails (closed).
        max_label_shift: highest Jensen–Shannon distance (base 2) of the label distribution.
        max_psi: highest population stability index of the label distribution.
        max_changed_share: highest share of the reviewed version's rows modified or removed.
    """

    ref: str = Field(min_length=1)
    max_label_shift: float | None = Field(default=None, ge=0, le=1)
    max_psi: float | None = Field(default=None, ge=0)
    max_changed_share: float | None = Field(default=None, ge=0, le=1)

    @field_validator("ref")
    @classmethod
    def _plain_ref(cls, v: str) -> str:
        if v.startswith("-") or set(v) & _REF_FORBIDDEN or ".." in v:
            raise ValueError(
                "baseline.ref must be a plain git revision (a tag, branch or commit id): no "
                "leading '-', whitespace, '..' or any of : ~ ^ ? * [ \\"
            )
        return v

    @model_validator(mode="after")
    def _has_limit(self) -> BaselineRule:
        if self.max_label_shift is None and self.max_psi is None and self.max_changed_share is None:
            raise ValueError(
                "baseline configures no limit; set max_label_shift, max_psi or max_changed_share"
            )
        return self


_CHECKS = (
    "label_column",
    "max_label_shift",
    "max_psi",
    "max_duplicate_share",
    "max_changed_share",
    "max_null_share",
    "columns",
    "ranges",
    "categories",
    "min_rows",
    "baseline",
)


class ValidationRule(StrictModel):
    """Checks applied to one tabular dataset (CSV or Parquet) when it changes.

    Attributes:
        path: repository-relative path of the data file (a DVC output or a git-tracked file).
        format: ``csv``, ``parquet`` or ``auto`` (by file extension).
        label_column: the label; needed by ``max_label_shift`` and ``max_psi``.
        max_label_shift: highest Jensen–Shannon distance (base 2, in [0, 1]) between the label
            distribution of this version and of the previously committed one.
        max_psi: highest population stability index of the label distribution.
        max_duplicate_share: highest share of rows that duplicate an earlier row.
        max_changed_share: highest share of the previous version's rows modified or removed.
        max_null_share: highest share of missing values in any column.
        columns: required columns and their types (int, float, number, string, bool,
            datetime, any).
        allow_extra_columns: whether columns not listed under ``columns`` may appear.
        allow_schema_change: whether columns or types may differ from the previous version.
        ranges: ``{column: [min, max]}`` (inclusive; ``null`` for an open end).
        categories: ``{column: [allowed values]}``.
        min_rows: fewest rows accepted.
        baseline: drift limits against a reviewed version (:class:`BaselineRule`).
    """

    path: str = Field(min_length=1)
    format: Literal["auto", "csv", "parquet"] = "auto"
    label_column: str | None = None
    max_label_shift: float | None = Field(default=None, ge=0, le=1)
    max_psi: float | None = Field(default=None, ge=0)
    max_duplicate_share: float | None = Field(default=None, ge=0, le=1)
    max_changed_share: float | None = Field(default=None, ge=0, le=1)
    max_null_share: float | None = Field(default=None, ge=0, le=1)
    columns: dict[str, ColumnType] | None = None
    allow_extra_columns: bool = True
    allow_schema_change: bool = False
    ranges: dict[str, list[float | None]] = Field(default_factory=dict)
    categories: dict[str, list[str | int | float | bool]] = Field(default_factory=dict)
    min_rows: int | None = Field(default=None, ge=0)
    baseline: BaselineRule | None = None

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        p = v.replace("\\", "/")
        if p.startswith("/") or ".." in p.split("/"):
            raise ValueError("path must be relative to the repository root and stay inside it")
        return p.removeprefix("./")

    @field_validator("ranges")
    @classmethod
    def _pairs(cls, v: dict[str, list[float | None]]) -> dict[str, list[float | None]]:
        for col, pair in v.items():
            if len(pair) != 2:
                raise ValueError(f"ranges.{col}: expected [min, max] (null for an open end)")
            lo, hi = pair
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"ranges.{col}: min {lo} is greater than max {hi}")
        return v

    @model_validator(mode="after")
    def _has_checks(self) -> ValidationRule:
        configured = [
            c for c in _CHECKS if c != "label_column" and getattr(self, c) not in (None, {})
        ]
        if not configured:
            raise ValueError(
                f"validation rule for {self.path!r} configures no check; "
                "set at least one of max_label_shift, max_psi, max_duplicate_share, "
                "max_changed_share, max_null_share, columns, ranges, categories, min_rows"
            )
        b = self.baseline
        shift = [self.max_label_shift, self.max_psi]
        if b is not None:
            shift += [b.max_label_shift, b.max_psi]
        if any(x is not None for x in shift) and not self.label_column:
            raise ValueError(
                f"validation rule for {self.path!r}: max_label_shift/max_psi need label_column"
            )
        return self


class DatasetPolicy(StrictModel):
    """Dataset signing and validation.

    Attributes:
        signers: policy key ids (purpose ``dataset``) whose signatures count.
        validate_: validation rules (YAML key ``validate``).
    """

    signers: list[str] = Field(default_factory=list)
    validate_: list[ValidationRule] = Field(default_factory=list, alias="validate")
