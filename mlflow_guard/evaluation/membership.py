"""ML04 membership inference: a loss-threshold attack on members (training data) vs holdout.

Score per record: the log-probability the model gives the record's true label (the negative
cross-entropy loss; Yeom et al. 2018). A labels-only model gives 1 when it predicts the true
label and 0 otherwise (gap attack). Members tend to have a lower loss; the attack's AUC,
advantage, TPR at 1% FPR and the empirical ε lower bound come from
:mod:`mlflow_guard.core.risk.stats`, with percentile-bootstrap confidence intervals.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlflow_guard.core.risk import stats
from mlflow_guard.evaluation.config import MembershipConfig
from mlflow_guard.evaluation.target import Array, Target


def record_scores(target: Target, x: Array, y: np.ndarray[Any, Any]) -> tuple[Array, str]:
    """Membership scores (higher = more member-like) and the attack's name."""
    if target.predict_proba is not None:
        p = target.proba(x)
        idx = np.searchsorted(target.classes, y)
        valid = (idx < len(target.classes)) & (
            target.classes[np.minimum(idx, len(target.classes) - 1)] == y
        )
        conf = np.where(valid, p[np.arange(len(x)), np.minimum(idx, p.shape[1] - 1)], 0.0)
        return np.log(np.clip(conf, 1e-12, 1.0)), "loss threshold (log-probability of true label)"
    return (target.labels(x) == y).astype(np.float64), "gap attack (labels only: correct or not)"


def evaluate(
    target: Target,
    x_train: Array,
    y_train: np.ndarray[Any, Any],
    x_eval: Array,
    y_eval: np.ndarray[Any, Any],
    cfg: MembershipConfig,
    seed: int,
) -> dict[str, Any]:
    """Membership metrics plus the attack and budget that produced them."""
    rng = np.random.default_rng(seed)
    n = min(len(x_train), len(x_eval), cfg.max_samples)
    mi = rng.choice(len(x_train), size=n, replace=False)
    ni = rng.choice(len(x_eval), size=n, replace=False)
    t = target.with_budget(None)
    members, attack = record_scores(t, x_train[mi], y_train[mi])
    nonmembers, _ = record_scores(t, x_eval[ni], y_eval[ni])
    m, nm = members.tolist(), nonmembers.tolist()
    auc = stats.bootstrap(m, nm, "auc", rounds=cfg.bootstrap_rounds, seed=seed)
    adv = stats.bootstrap(m, nm, "advantage", rounds=cfg.bootstrap_rounds, seed=seed)
    metrics = {
        "membership_auc": auc.value,
        "membership_auc_ci_low": auc.low,
        "membership_auc_ci_high": auc.high,
        "membership_advantage": adv.value,
        "membership_advantage_ci_low": adv.low,
        "membership_advantage_ci_high": adv.high,
        "membership_tpr_at_1pct_fpr": stats.tpr_at_fpr(m, nm, 0.01),
        "membership_epsilon_lb": stats.epsilon_lower_bound(m, nm, delta=cfg.delta),
    }
    return {
        "metrics": metrics,
        "attack": attack,
        "budget": {
            "queries": t.queries,
            "members": n,
            "nonmembers": n,
            "bootstrap_rounds": cfg.bootstrap_rounds,
            "confidence": 0.95,
            "delta": cfg.delta,
        },
    }
