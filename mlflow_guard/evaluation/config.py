"""``evaluator_config`` of the ``guard`` evaluator: validated, with budgets and defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class RobustnessConfig(_Strict):
    """ML01: exact bound for linear models, budgeted HopSkipJump for the rest."""

    enabled: bool = True
    scale: Literal["std", "raw"] = Field(
        default="std", description="measure L2 in per-feature standard deviations, or raw units"
    )
    epsilon: float = Field(default=0.5, gt=0, description="L2 radius in the chosen scale")
    attack: Literal["hopskipjump", "line_search"] = "hopskipjump"
    samples: int = Field(default=20, ge=1, description="points attacked (black-box)")
    max_queries: int = Field(default=20_000, ge=100, description="model queries, all points")
    max_seconds: float = Field(default=10.0, gt=0, description="wall-clock cap of the attack")


class MembershipConfig(_Strict):
    """ML04: loss/confidence threshold attack, train (members) vs evaluation data."""

    enabled: bool = True
    max_samples: int = Field(default=1000, ge=10, description="per group (members, non-members)")
    bootstrap_rounds: int = Field(default=200, ge=20)
    delta: float = Field(default=1e-5, gt=0, lt=1)
    art_black_box: bool = Field(default=True, description="also run ART's black-box MIA")


class InversionConfig(_Strict):
    """ML03: attribute-inference gain for the sensitive features."""

    enabled: bool = True


class ExtractionConfig(_Strict):
    """ML05: surrogate fidelity from N queries."""

    enabled: bool = True
    queries: int = Field(default=500, ge=10)


class GuardEvalConfig(_Strict):
    """All options; ``train_data`` (features + label column, or ``(X, y)``) enables ML03/ML04."""

    train_data: Any = None
    label: str | None = Field(default=None, description="label column of a train_data frame")
    sensitive_features: list[str | int] = Field(default_factory=list)
    seed: int = 0
    robustness: RobustnessConfig = Field(default_factory=RobustnessConfig)
    membership: MembershipConfig = Field(default_factory=MembershipConfig)
    inversion: InversionConfig = Field(default_factory=InversionConfig)
    extraction: ExtractionConfig = Field(default_factory=ExtractionConfig)
