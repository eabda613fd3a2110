"""Distribution statistics for data validation (numpy only; no scipy needed).

- Jensen–Shannon distance, base 2: ``sqrt(JSD(P, Q))`` in [0, 1]; 0 for equal distributions.
- Population stability index: ``sum((q - p) * ln(q / p))`` with empty bins floored at 1e-4,
  the usual convention (PSI < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 large shift).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

_EPS = 1e-4


def distribution(values: Iterable[Any]) -> dict[str, float]:
    """Share of each distinct value (keys are ``str`` so ``1`` and ``1.0`` from CSV agree)."""
    counts = Counter(_key(v) for v in values)
    total = sum(counts.values())
    return {k: c / total for k, c in sorted(counts.items())} if total else {}


def _key(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _aligned(p: Mapping[str, float], q: Mapping[str, float]) -> list[tuple[float, float]]:
    return [(p.get(k, 0.0), q.get(k, 0.0)) for k in sorted(p.keys() | q.keys())]


def js_distance(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Jensen–Shannon distance (base 2) between two categorical distributions."""

    def kl(a: float, m: float) -> float:
        return a * math.log2(a / m) if a > 0 else 0.0

    jsd = 0.0
    for a, b in _aligned(p, q):
        m = (a + b) / 2
        jsd += 0.5 * kl(a, m) + 0.5 * kl(b, m)
    return math.sqrt(max(jsd, 0.0))


def psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """Population stability index of ``actual`` against ``expected``."""
    total = 0.0
    for e, a in _aligned(expected, actual):
        e, a = max(e, _EPS), max(a, _EPS)
        total += (a - e) * math.log(a / e)
    return total


def describe(d: Mapping[str, float], limit: int = 6) -> str:
    """``{0: 0.60, 1: 0.40}`` style summary."""
    items = list(d.items())
    body = ", ".join(f"{k}: {v:.3f}" for k, v in items[:limit])
    return "{" + body + (", …" if len(items) > limit else "") + "}"


def removed_rows(prev: Any, cur: Any) -> int:
    """Rows of ``prev`` (a DataFrame) absent from ``cur``, as multisets: modified or removed."""
    import pandas as pd

    def rows(df: Any) -> Counter[int]:
        if not len(df):
            return Counter()
        return Counter(pd.util.hash_pandas_object(df.astype(str), index=False).tolist())

    old, new = rows(prev), rows(cur)
    return sum((old - new).values())
