"""Policy section ``feedback``: which sources may feed data back, and how fresh it must be."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from mlflow_guard.core.policy._types import Duration, StrictModel


class FeedbackPolicy(StrictModel):
    """Feedback-data authentication settings."""

    sources: list[str] = Field(default_factory=list)
    tolerance: Duration = timedelta(seconds=300)
    datasets: list[str] = Field(default_factory=list)
