"""Policy section ``registry``: registration requirements and protected promotion targets."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator

from mlflow_guard.core.policy._types import Duration, StrictModel

LineageRequirement = Literal[
    "git_clean", "git_commit", "datasets_signed", "environment", "base_model_signed", "attestation"
]
_METRIC_GATE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(\.\d+)?([eE][-+]?\d+)?)\s*$")


class MetricGates(StrictModel):
    """Metric thresholds on the source run, e.g. ``{accuracy: ">= 0.9"}``."""

    metrics: dict[str, str] = Field(default_factory=dict)

    @field_validator("metrics")
    @classmethod
    def _comparisons(cls, v: dict[str, str]) -> dict[str, str]:
        for name, expr in v.items():
            if not _METRIC_GATE.match(expr):
                raise ValueError(
                    f"metric gate {name!r}: expected '<op> <number>' with op one of "
                    f">=, <=, >, <, ==, != (e.g. '>= 0.9'), got {expr!r}"
                )
        return v


class _Protected(StrictModel):
    approvals: int = Field(default=1, ge=0)
    approver_roles: list[str] = Field(default_factory=list)
    separation_of_duties: bool = True
    approval_ttl: Duration | None = None
    gates: MetricGates = Field(default_factory=MetricGates)


class ProtectedAlias(_Protected):
    """A registered-model alias (e.g. ``production``) that needs approvals to set or move."""

    alias: str = Field(min_length=1)


class ProtectedStage(_Protected):
    """A legacy model-version stage (``Staging``, ``Production``)."""

    stage: Literal["Staging", "Production", "Archived"]


class ProtectedTag(_Protected):
    """A model-version tag key whose writes need approvals."""

    tag: str = Field(min_length=1)


def _target_kind(v: Any) -> str | None:
    if isinstance(v, dict):
        kinds = [k for k in ("alias", "stage", "tag") if k in v]
        return kinds[0] if len(kinds) == 1 else None
    for k, cls in (("alias", ProtectedAlias), ("stage", ProtectedStage), ("tag", ProtectedTag)):
        if isinstance(v, cls):
            return k
    return None


ProtectedTarget = Annotated[
    Annotated[ProtectedAlias, Tag("alias")]
    | Annotated[ProtectedStage, Tag("stage")]
    | Annotated[ProtectedTag, Tag("tag")],
    Discriminator(
        _target_kind,
        custom_error_type="protected_target",
        custom_error_message="each protected entry needs exactly one of 'alias', 'stage' or 'tag'",
    ),
]


class RegistryPolicy(StrictModel):
    """What a model version must satisfy to be registered and promoted."""

    require_signature: bool = True
    require_lineage: list[LineageRequirement] = Field(default_factory=list)
    scan_model_files: bool = True
    protected: list[ProtectedTarget] = Field(default_factory=list)
