"""Skew checks for feedback batches (OWASP ML08, model skewing). Pure arithmetic.

Three signals, each with a policy threshold; any violation quarantines the whole batch:

- label distribution of the batch, and of each source's part, against a baseline, as the
  Jensen–Shannon *distance* (square root of the JS divergence with base-2 logs, in 0..1);
- the share of the batch that comes from one source;
- a source's volume in this batch against its mean per batch over its recent history.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mlflow_guard.core.policy.feedback import SkewPolicy


def distribution(counts: Mapping[str, float]) -> dict[str, float]:
    """Normalise counts to shares (empty or all-zero input gives an empty dict)."""
    total = float(sum(counts.values()))
    return {k: v / total for k, v in counts.items()} if total > 0 else {}


def js_distance(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Jensen–Shannon distance between two discrete distributions (base 2: 0 same, 1 disjoint).

    Inputs are normalised first; labels missing from one side count as probability 0.
    """
    pn, qn = distribution(p), distribution(q)
    if not pn or not qn:
        return 1.0 if (pn or qn) else 0.0
    div = 0.0
    for k in pn.keys() | qn.keys():
        a, b = pn.get(k, 0.0), qn.get(k, 0.0)
        m = a / 2 + b / 2
        if m <= 0.0:  # both zero, or subnormal weights whose half underflows: no contribution
            continue
        if a > 0:
            div += 0.5 * a * math.log2(a / m)
        if b > 0:
            div += 0.5 * b * math.log2(b / m)
    return math.sqrt(max(0.0, min(1.0, div)))


@dataclass(frozen=True)
class SkewReport:
    """Measured numbers of one batch and the violations found (empty = ok)."""

    records: int
    label_distance: float | None
    source_label_distance: dict[str, float]
    source_share: dict[str, float]
    volume_ratio: dict[str, float]
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no threshold was exceeded."""
        return not self.violations

    def to_json(self) -> dict[str, object]:
        """The numbers, rounded, for quarantine entries and reports."""
        return {
            "records": self.records,
            "label_distance": None
            if self.label_distance is None
            else round(self.label_distance, 4),
            "source_label_distance": {
                k: round(v, 4) for k, v in self.source_label_distance.items()
            },
            "source_share": {k: round(v, 4) for k, v in self.source_share.items()},
            "volume_ratio": {k: round(v, 4) for k, v in self.volume_ratio.items()},
            "violations": list(self.violations),
        }


def label_of(payload: Mapping[str, object], label_field: str) -> str | None:
    """The label of a payload as text (``None`` if absent or not a scalar)."""
    v = payload.get(label_field)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):  # a tuple: a ``X | Y`` union is built anew on every call
        return str(v)
    return None


def assess(
    items: Sequence[tuple[str, str | None]],
    policy: SkewPolicy,
    *,
    baseline: Mapping[str, float] | None,
    history: Mapping[str, Sequence[int]],
) -> SkewReport:
    """Measure a batch and compare with the thresholds.

    Args:
        items: ``(source, label)`` per authentic record of the batch.
        policy: thresholds.
        baseline: label shares to compare with (policy baseline or accepted history);
            ``None`` skips the distribution checks.
        history: per source, its record counts in recent earlier batches (newest first).
    """
    n = len(items)
    per_source: dict[str, Counter[str]] = {}
    for source, label in items:
        c = per_source.setdefault(source, Counter())
        if label is not None:
            c[label] += 1
    counts = Counter(src for src, _ in items)
    violations: list[str] = []
    label_distance: float | None = None
    source_dist: dict[str, float] = {}
    if baseline and policy.max_label_distance is not None and n >= policy.min_records:
        total: Counter[str] = Counter()
        for c in per_source.values():
            total.update(c)
        label_distance = js_distance(total, baseline)
        if label_distance > policy.max_label_distance:
            violations.append(
                f"label distribution of the batch is {label_distance:.3f} (Jensen–Shannon "
                f"distance) from the baseline; the limit is {policy.max_label_distance}"
            )
        for s, c in sorted(per_source.items()):
            if counts[s] < policy.min_records:
                continue
            d = source_dist[s] = js_distance(c, baseline)
            if d > policy.max_label_distance:
                violations.append(
                    f"labels from source {s!r} are {d:.3f} from the baseline; "
                    f"the limit is {policy.max_label_distance}"
                )
    share = {s: counts[s] / n for s in counts} if n else {}
    if policy.max_source_share is not None and n >= policy.min_records:
        for s, v in sorted(share.items()):
            if v > policy.max_source_share:
                violations.append(
                    f"source {s!r} sent {v:.1%} of the batch; the limit is "
                    f"{policy.max_source_share:.0%}"
                )
    ratios: dict[str, float] = {}
    for s, cnt in sorted(counts.items()):
        past = list(history.get(s, ()))[: policy.history_batches]
        if len(past) < policy.min_history:
            continue
        mean = sum(past) / len(past)
        ratios[s] = cnt / mean if mean > 0 else math.inf
        if policy.max_volume_ratio is not None and ratios[s] > policy.max_volume_ratio:
            violations.append(
                f"source {s!r} sent {cnt} records, {ratios[s]:.1f}× its mean of {mean:.1f} "
                f"per batch; the limit is {policy.max_volume_ratio}×"
            )
    return SkewReport(n, label_distance, source_dist, share, ratios, violations)


def label_counts(payloads: Iterable[Mapping[str, object]], label_field: str) -> Counter[str]:
    """Count labels over payloads (records without a label are skipped)."""
    out: Counter[str] = Counter()
    for p in payloads:
        lab = label_of(p, label_field)
        if lab is not None:
            out[lab] += 1
    return out
