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


def _canonical_text(col: Any) -> Any:
    """A column as text in which equal numbers read alike: an integral float within 2**53 is
    written as the integer (``3.0`` as ``3``), so a column that only changed dtype (an int
    column that gained a missing value and became float) does not count as modified."""
    import numpy as np
    import pandas as pd

    if not pd.api.types.is_float_dtype(col):
        return col.astype(str)
    v = col.to_numpy(dtype=float)
    integral = np.isfinite(v) & (np.floor(v) == v) & (np.abs(v) < 2.0**53)
    text = col.astype(str).to_numpy(dtype=object)
    text[integral] = v[integral].astype(np.int64).astype(str)
    return pd.Series(text, index=col.index)


def removed_rows(prev: Any, cur: Any) -> int:
    """Rows of ``prev`` (a DataFrame) absent from ``cur``, as multisets: modified or removed.

    Cells compare as text, numbers canonically (``3`` equals ``3.0``).
    """
    import pandas as pd

    def rows(df: Any) -> Counter[int]:
        if not len(df):
            return Counter()
        text = pd.DataFrame({c: _canonical_text(df[c]) for c in df.columns})
        return Counter(pd.util.hash_pandas_object(text, index=False).tolist())

    old, new = rows(prev), rows(cur)
    return sum((old - new).values())
