"""Policy sections ``roles`` and ``access``: who may do what, on which experiments and models."""

from __future__ import annotations

from pydantic import Field

from mlflow_guard.core.policy._types import Action, StrictModel


class AccessRule(StrictModel):
    """Grants a role actions on experiments and registered models matched by name globs.

    An empty glob matches nothing; ``"*"`` matches everything.
    """

    role: str = Field(min_length=1)
    allow: list[Action] = Field(min_length=1)
    experiments: str = ""
    models: str = ""
