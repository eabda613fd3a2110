"""Membership-inference statistics: ROC AUC, advantage, TPR at low FPR, empirical ε bound.

Scores are "membership scores": higher means "more likely a training member". Everything here
is standard-library Python (``math``, ``random``) so the pure core stays free of numpy.

The empirical ε lower bound follows Jagielski et al., "Auditing Differentially Private Machine
Learning" (NeurIPS 2020): for any threshold attack with false-positive rate FPR and
false-negative rate FNR against an (ε, δ)-DP mechanism, ``ε ≥ log((1 - δ - FPR) / FNR)`` and
``ε ≥ log((1 - δ - FNR) / FPR)``. Rates are replaced by their Clopper-Pearson upper bounds at the
given confidence, so the bound holds with that confidence, not just on average.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


def roc_auc(members: Sequence[float], nonmembers: Sequence[float]) -> float:
    """Probability a random member scores above a random non-member (ties count half)."""
    if not members or not nonmembers:
        raise ValueError("roc_auc needs at least one member and one non-member score")
    labelled = sorted([(s, 1) for s in members] + [(s, 0) for s in nonmembers])
    rank_sum, i, n = 0.0, 0, len(labelled)
    while i < n:
        j = i
        while j + 1 < n and labelled[j + 1][0] == labelled[i][0]:
            j += 1
        avg_rank = (i + j) / 2 + 1
        rank_sum += avg_rank * sum(lab for _, lab in labelled[i : j + 1])
        i = j + 1
    n1, n0 = len(members), len(nonmembers)
    return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)


def roc_points(members: Sequence[float], nonmembers: Sequence[float]) -> list[tuple[float, float]]:
    """(FPR, TPR) for every threshold "score ≥ t", from (0, 0) to (1, 1)."""
    thresholds = sorted(set(members) | set(nonmembers), reverse=True)
    n1, n0 = len(members), len(nonmembers)
    sm, sn = sorted(members, reverse=True), sorted(nonmembers, reverse=True)
    points, a, b = [(0.0, 0.0)], 0, 0
    for t in thresholds:
        while a < n1 and sm[a] >= t:
            a += 1
        while b < n0 and sn[b] >= t:
            b += 1
        points.append((b / n0, a / n1))
    return points


def advantage(members: Sequence[float], nonmembers: Sequence[float]) -> float:
    """Membership advantage: the largest TPR − FPR over thresholds (Yeom et al. 2018)."""
    return max(tpr - fpr for fpr, tpr in roc_points(members, nonmembers))


def tpr_at_fpr(members: Sequence[float], nonmembers: Sequence[float], fpr: float = 0.01) -> float:
    """Largest TPR among thresholds whose FPR is at most ``fpr`` (Carlini et al. 2022)."""
    return max(t for f, t in roc_points(members, nonmembers) if f <= fpr)


def _binom_cdf(k: int, n: int, p: float) -> float:
    if p <= 0:
        return 1.0
    if p >= 1:
        return 1.0 if k >= n else 0.0
    lp, lq = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k + 1):
        total += math.exp(
            math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        )
    return min(total, 1.0)


@functools.lru_cache(maxsize=4096)
def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a binomial rate after ``k`` of ``n``."""
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    alpha = 1 - confidence
    lo, hi = k / n, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if _binom_cdf(k, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def epsilon_lower_bound(
    members: Sequence[float],
    nonmembers: Sequence[float],
    *,
    delta: float = 1e-5,
    confidence: float = 0.95,
    max_thresholds: int = 50,
) -> float:
    """Empirical ε lower bound of the threshold attack (0 when nothing can be claimed)."""
    n1, n0 = len(members), len(nonmembers)
    pts = roc_points(members, nonmembers)
    step = max(1, len(pts) // max_thresholds)
    best = 0.0
    for fpr, tpr in [*pts[::step], pts[-1]]:
        fp, fn = round(fpr * n0), round((1 - tpr) * n1)
        fpr_u = clopper_pearson_upper(fp, n0, confidence)
        fnr_u = clopper_pearson_upper(fn, n1, confidence)
        for num, den in ((1 - delta - fpr_u, fnr_u), (1 - delta - fnr_u, fpr_u)):
            if num > 0 and den > 0:
                best = max(best, math.log(num / den))
    return best


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile-bootstrap confidence interval."""

    value: float
    low: float
    high: float


def bootstrap(
    members: Sequence[float],
    nonmembers: Sequence[float],
    statistic: str = "auc",
    *,
    rounds: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap of ``auc`` or ``advantage``, resampling each group separately."""
    fn = {"auc": roc_auc, "advantage": advantage}[statistic]
    rng = random.Random(seed)  # noqa: S311 - reproducible statistics, not secrets
    stats = sorted(
        fn(rng.choices(members, k=len(members)), rng.choices(nonmembers, k=len(nonmembers)))
        for _ in range(rounds)
    )
    lo_i = math.floor((1 - confidence) / 2 * (rounds - 1))
    hi_i = math.ceil((1 + confidence) / 2 * (rounds - 1))
    return Interval(fn(members, nonmembers), stats[lo_i], stats[hi_i])
