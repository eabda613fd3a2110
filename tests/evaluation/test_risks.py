"""Risk assessments on real scikit-learn models: ordering, exactness, budgets, provenance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlflow_guard.evaluation import assess, membership, robustness, target
from mlflow_guard.evaluation.config import (
    GuardEvalConfig,
    MembershipConfig,
    RobustnessConfig,
)


def test_overfit_forest_leaks_membership_more_than_logreg(
    split: Any, logreg: Any, forest: Any
) -> None:
    xt, yt, xe, ye = split
    cfg = MembershipConfig(bootstrap_rounds=50)
    lr = membership.evaluate(target.from_estimator(logreg), xt, yt, xe, ye, cfg, 0)["metrics"]
    rf = membership.evaluate(target.from_estimator(forest), xt, yt, xe, ye, cfg, 0)["metrics"]
    assert rf["membership_auc"] > lr["membership_auc"] + 0.05
    assert rf["membership_auc_ci_low"] > lr["membership_auc"]
    assert rf["membership_advantage"] > lr["membership_advantage"]
    assert rf["membership_epsilon_lb"] >= lr["membership_epsilon_lb"]
    # ART's trained black-box attack agrees on the ordering
    assert rf["membership_auc_art_black_box"] > lr["membership_auc_art_black_box"]


def _brute_force_min_flip(model: Any, x0: np.ndarray, sigma: np.ndarray, rng: Any) -> float:
    """Smallest scaled-L2 step that flips the label over many random and basis directions."""
    d = len(x0)
    dirs = np.vstack([rng.normal(size=(3000, d)), np.eye(d), -np.eye(d)])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    base = model.predict(x0[None, :])[0]
    hi = 64.0
    cand = dirs[model.predict(x0 + (hi * dirs) * sigma) != base]
    lo_arr, hi_arr = np.zeros(len(cand)), np.full(len(cand), hi)
    for _ in range(40):
        mid = (lo_arr + hi_arr) / 2
        f = model.predict(x0 + (mid[:, None] * cand) * sigma) != base
        hi_arr = np.where(f, mid, hi_arr)
        lo_arr = np.where(f, lo_arr, mid)
    return float(hi_arr.min()) if len(hi_arr) else np.inf


def test_linear_bound_is_exact_against_brute_force(split: Any, logreg: Any) -> None:
    _, _, xe, _ = split
    sigma = robustness.feature_scale(xe, "std")
    t = target.from_estimator(logreg)
    w, b = t.linear_parts()  # type: ignore[misc]
    rng = np.random.default_rng(0)
    for i in (0, 5, 17):
        x0 = xe[i]
        idx = np.searchsorted(t.classes, logreg.predict(x0[None, :]))
        exact = robustness.linear_margins(w * sigma, b, (x0 / sigma)[None, :], idx)[0]
        # the optimal direction flips just beyond the bound and not just inside it
        n = (w[0] * sigma) / np.linalg.norm(w[0] * sigma)
        sign = -np.sign((x0 @ w[0]) + b[0])
        label = logreg.predict(x0[None, :])[0]
        assert logreg.predict((x0 + sign * exact * 1.001 * n * sigma)[None, :])[0] != label
        assert logreg.predict((x0 + sign * exact * 0.999 * n * sigma)[None, :])[0] == label
        # no direction among thousands (random and axis-aligned) flips with a smaller step
        assert _brute_force_min_flip(logreg, x0, sigma, rng) >= exact * (1 - 1e-6)


def test_multiclass_linear_bound() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    t = target.from_estimator(model)
    w, b = t.linear_parts()  # type: ignore[misc]
    sigma = np.ones(x.shape[1])
    rng = np.random.default_rng(1)
    for i in (0, 60, 120):
        idx = np.searchsorted(t.classes, model.predict(x[i : i + 1]))
        exact = robustness.linear_margins(w, b, x[i : i + 1], idx)[0]
        brute = _brute_force_min_flip(model, x[i], sigma, rng)
        assert brute >= exact * (1 - 1e-6)
        assert brute == pytest.approx(exact, rel=0.1)


def test_nonlinear_models_are_not_treated_as_linear(forest: Any) -> None:
    assert target.from_estimator(forest).linear_parts() is None


@pytest.mark.parametrize("attack", ["hopskipjump", "line_search"])
def test_black_box_attack_respects_its_budget(split: Any, forest: Any, attack: str) -> None:
    _, _, xe, ye = split
    cfg = RobustnessConfig(attack=attack, samples=5, max_queries=1500, max_seconds=4.0)
    res = robustness.evaluate(target.from_estimator(forest), xe, ye, cfg, 0)
    assert res["budget"]["queries"] <= 1500
    assert res["budget"]["seconds"] <= 4.0 + 3.0  # checked between points
    assert res["exact"] is False
    m = res["metrics"]
    assert 0.0 <= m["robust_accuracy"] <= 1.0
    assert m["median_perturbation_l2"] > 0


def test_target_budget_is_hard() -> None:
    t = target.Target(np.array([0, 1]), lambda x: np.zeros(len(x)), budget=10)
    t.labels(np.zeros((10, 2)))
    with pytest.raises(target.BudgetExceeded):
        t.labels(np.zeros((1, 2)))
    assert t.queries == 10


def test_assess_records_attack_and_budget_everywhere(split: Any, logreg: Any) -> None:
    xt, yt, xe, ye = split
    cfg = GuardEvalConfig(sensitive_features=[0], membership=MembershipConfig(bootstrap_rounds=30))
    out = assess.assess(target.from_estimator(logreg), xe, ye, cfg, train=(xt, yt))
    assert set(out) == {"robustness", "membership", "inversion", "extraction"}
    for sec in out.values():
        assert sec["attack"]
        assert "queries" in sec["budget"]
    ext = out["extraction"]["metrics"]
    assert ext["extraction_linear_proba_exposed"] == 1.0
    assert ext["extraction_equation_solving_fidelity"] == 1.0
    assert out["extraction"]["budget"]["queries"] <= out["extraction"]["budget"]["max_queries"]
    assert "inversion_gain.x0" in out["inversion"]["metrics"]
    skipped = assess.assess(target.from_estimator(logreg), xe, ye, GuardEvalConfig())
    assert "skipped" in skipped["membership"]
    assert "skipped" in skipped["inversion"]


def test_labels_only_model_uses_gap_attack(split: Any, forest: Any) -> None:
    xt, yt, xe, ye = split
    t = target.Target(forest.classes_, forest.predict)
    res = membership.evaluate(t, xt, yt, xe, ye, MembershipConfig(bootstrap_rounds=20), 0)
    assert "labels only" in res["attack"]
    assert res["metrics"]["membership_auc"] >= 0.5


def test_exhausted_budget_makes_no_robustness_claim(split: Any, forest: Any) -> None:
    _, _, xe, ye = split
    correct = np.flatnonzero(forest.predict(xe) == ye)[:5]
    cfg = RobustnessConfig(attack="line_search", samples=5, max_queries=100, max_seconds=1e-9)
    res = robustness.evaluate(target.from_estimator(forest), xe[correct], ye[correct], cfg, 0)
    assert res["metrics"]["robustness_points"] == 0.0
    assert np.isnan(res["metrics"]["robust_accuracy"])  # unattacked points are not "robust"
    assert "guard.robust_accuracy" not in assess.flat_metrics({"robustness": res})
