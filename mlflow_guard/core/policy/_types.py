"""Small value types shared by the policy sections: durations, purposes, actions."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_SECONDS = 100 * 366 * 86400


def parse_duration(value: object) -> timedelta:
    """Parse ``300s``, ``15m``, ``12h``, ``7d``, ``2w`` (or a number of seconds) to a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '300s', '15m', '12h' or '7d'")
    seconds: float | None = None
    if isinstance(value, int | float):
        seconds = value
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds is None:
        raise ValueError(f"expected a duration such as '300s', '15m', '12h' or '7d', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0 or seconds > _MAX_SECONDS:
        raise ValueError(f"a duration must be between 0 and 100 years, got {value!r}")
    return timedelta(seconds=seconds)


def _format_duration(value: timedelta) -> str:
    return f"{int(value.total_seconds())}s"


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(_format_duration, return_type=str)
]
"""A duration written as ``<number><s|m|h|d|w>`` in YAML."""


class Purpose(StrEnum):
    """What a key is trusted to sign. A key trusted for one purpose is not trusted for another."""

    MODEL = "model"
    DATASET = "dataset"
    APPROVAL = "approval"
    FEEDBACK = "feedback"
    AUDIT = "audit"
    SERVING = "serving"


class Action(StrEnum):
    """Actions that access rules grant."""

    READ = "read"
    LOG = "log"
    REGISTER = "register"
    APPROVE = "approve"
    PROMOTE = "promote"
    ADMIN = "admin"


class StrictModel(BaseModel):
    """Base of every policy model: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")
