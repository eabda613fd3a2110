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


def art_black_box_auc(
    t: Target,
    xm: Array,
    ym: np.ndarray[Any, Any],
    xn: Array,
    yn: np.ndarray[Any, Any],
    seed: int,
) -> float | None:
    """AUC of ART's ``MembershipInferenceBlackBox`` (random-forest attack model).

    It is trained on half of the members and non-members (their probability vectors and
    labels) and scored on the other halves. ``None`` when ART is missing or the model exposes
    labels only.
    """
    if t.predict_proba is None or len(xm) < 20 or len(xn) < 20:
        return None
    try:
        from art.attacks.inference.membership_inference import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            MembershipInferenceBlackBox,
        )
        from art.estimators.classification import BlackBoxClassifier  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    pm, pn = t.proba(xm), t.proba(xn)
    im, i_n = np.searchsorted(t.classes, ym), np.searchsorted(t.classes, yn)
    hm, hn = len(xm) // 2, len(xn) // 2
    clf = BlackBoxClassifier(t.proba, input_shape=(xm.shape[1],), nb_classes=len(t.classes))
    # ART's default random-forest attack model draws from numpy's global state: seed it for
    # reproducibility and restore the caller's state afterwards.
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        attack = MembershipInferenceBlackBox(clf, input_type="prediction", attack_model_type="rf")
        attack.fit(
            x=xm[:hm], y=im[:hm], test_x=xn[:hn], test_y=i_n[:hn], pred=pm[:hm], test_pred=pn[:hn]
        )
    finally:
        np.random.set_state(saved)
    sm = attack.infer(xm[hm:], im[hm:], pred=pm[hm:], probabilities=True)
    sn = attack.infer(xn[hn:], i_n[hn:], pred=pn[hn:], probabilities=True)
    sm, sn = (
        np.asarray(sm).reshape(len(xm) - hm, -1)[:, -1],
        np.asarray(sn).reshape(len(xn) - hn, -1)[:, -1],
    )
    return stats.roc_auc(sm.tolist(), sn.tolist())


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
    art_auc = (
        art_black_box_auc(t, x_train[mi], y_train[mi], x_eval[ni], y_eval[ni], seed)
        if cfg.art_black_box
        else None
    )
    if art_auc is not None:
        metrics["membership_auc_art_black_box"] = art_auc
        attack += "; ART MembershipInferenceBlackBox (random forest on probabilities, half/half)"
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
