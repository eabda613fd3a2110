"""Metric gates: ``accuracy: ">= 0.9"`` style thresholds on a run's metrics.

A gate whose metric is missing fails (fail closed); NaN never passes.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mlflow_guard.core.errors import PolicyError

_EXPR = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class GateResult:
    """One metric gate's outcome, with the numbers."""

    metric: str
    expression: str
    value: float | None
    passed: bool

    def describe(self) -> str:
        """``accuracy = 0.93 (needs >= 0.9): pass``."""
        shown = "missing" if self.value is None else f"{self.value:g}"
        verdict = "pass" if self.passed else "FAIL"
        return f"{self.metric} = {shown} (needs {self.expression.strip()}): {verdict}"


def parse(expression: str) -> tuple[str, float]:
    """Split ``">= 0.9"`` into (operator, threshold).

    Raises:
        PolicyError: not of the form ``<op> <number>``.
    """
    m = _EXPR.match(expression)
    if not m:
        raise PolicyError(
            f"metric gate {expression!r} is not '<op> <number>'",
            hint="use one of >=, <=, >, <, ==, != followed by a number, e.g. '>= 0.9'",
        )
    return m.group(1), float(m.group(2))


def evaluate(gates: Mapping[str, str], metrics: Mapping[str, float]) -> list[GateResult]:
    """Evaluate every gate against ``metrics`` (latest value per metric name)."""
    out = []
    for name, expr in sorted(gates.items()):
        op, threshold = parse(expr)
        value = metrics.get(name)
        passed = value is not None and not math.isnan(value) and _OPS[op](float(value), threshold)
        out.append(GateResult(name, expr, None if value is None else float(value), passed))
    return out
