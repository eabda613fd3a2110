"""The pure membership statistics against brute force and known values."""

from __future__ import annotations

import itertools
import random

import pytest
from scipy.stats import beta

from mlflow_guard.core.risk import stats


def test_auc_equals_pairwise_count() -> None:
    rng = random.Random(3)
    m = [round(rng.gauss(0.5, 1), 1) for _ in range(40)]
    n = [round(rng.gauss(0.0, 1), 1) for _ in range(50)]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(m, n))
    assert stats.roc_auc(m, n) == pytest.approx(wins / (len(m) * len(n)))


def test_perfect_and_useless_attacks() -> None:
    assert stats.roc_auc([2, 3], [0, 1]) == 1.0
    assert stats.advantage([2, 3], [0, 1]) == 1.0
    assert stats.tpr_at_fpr([2, 3], [0, 1], 0.01) == 1.0
    same = [0.0, 1.0, 2.0] * 30
    assert stats.roc_auc(same, same) == 0.5
    assert stats.advantage(same, same) == 0.0
    assert stats.epsilon_lower_bound(same, same) == 0.0


def test_clopper_pearson_matches_beta_quantile() -> None:
    for k, n in ((0, 50), (3, 100), (40, 200)):
        assert stats.clopper_pearson_upper(k, n) == pytest.approx(
            beta.ppf(0.95, k + 1, n - k), abs=1e-6
        )


def test_epsilon_bound_grows_with_separation() -> None:
    rng = random.Random(0)
    n = [rng.gauss(0, 1) for _ in range(300)]
    weak = stats.epsilon_lower_bound([rng.gauss(0.2, 1) for _ in range(300)], n)
    strong = stats.epsilon_lower_bound([rng.gauss(3.0, 1) for _ in range(300)], n)
    assert 0 <= weak < strong
    assert strong > 1.0


def test_bootstrap_interval_contains_estimate() -> None:
    rng = random.Random(1)
    m, n = [rng.gauss(0.5, 1) for _ in range(100)], [rng.gauss(0, 1) for _ in range(100)]
    iv = stats.bootstrap(m, n, "auc", rounds=100)
    assert iv.low <= iv.value <= iv.high
    assert iv.high - iv.low < 0.3
