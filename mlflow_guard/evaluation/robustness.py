"""ML01 robustness: exact minimal L2 perturbation for affine models, HopSkipJump otherwise.

For an affine classifier with scores ``s_k(x) = w_k·x + b_k`` and prediction ``argmax_k s_k``,
the region where class ``y`` wins is the intersection of the half-spaces ``s_y − s_j ≥ 0``. The
distance from a point inside a convex polyhedron to its complement is the smallest distance to
one of its bounding hyperplanes, so the minimal L2 perturbation that changes the prediction is
exactly ``min_j (s_y − s_j) / ‖w_y − w_j‖`` (binary: ``|s(x)| / ‖w‖``). Other models get a
budgeted decision-based black-box attack (IBM ART's HopSkipJump): its perturbations are upper
bounds on the minimal ones, so the robust accuracy it yields is an *upper* bound.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mlflow_guard.evaluation.config import RobustnessConfig
from mlflow_guard.evaluation.target import Array, BudgetExceeded, Target


def linear_margins(w: Array, b: Array, x: Array, pred_index: np.ndarray[Any, Any]) -> Array:
    """Minimal L2 distance from each row of ``x`` to its predicted class's decision boundary."""
    scores = x @ w.T + b
    if w.shape[0] == 1:
        return np.asarray(np.abs(scores[:, 0]) / np.linalg.norm(w[0]), dtype=np.float64)
    out = np.full(len(x), np.inf)
    for i, yi in enumerate(pred_index):
        for j in range(w.shape[0]):
            if j != yi:
                dist = (scores[i, yi] - scores[i, j]) / np.linalg.norm(w[yi] - w[j])
                out[i] = min(out[i], dist)
    return out


def feature_scale(x: Array, scale: str) -> Array:
    """Per-feature unit: standard deviation on ``x`` (``std``) or 1 (``raw``)."""
    if scale == "raw":
        return np.ones(x.shape[1])
    sd = x.std(axis=0)
    return np.where(sd > 0, sd, 1.0)


def _summary(dist: Array, correct: np.ndarray[Any, Any], x: Array, eps: float) -> dict[str, float]:
    if len(x) == 0:  # nothing was attacked within the budget: no claim at all
        nan = float("nan")
        return {
            "robust_accuracy": nan,
            "median_perturbation_l2": nan,
            "median_relative_perturbation": nan,
            "robustness_epsilon": eps,
            "robustness_points": 0.0,
        }
    robust = correct & (dist > eps)
    finite = dist[correct & np.isfinite(dist)]
    rel = finite / np.maximum(np.linalg.norm(x[correct & np.isfinite(dist)], axis=1), 1e-12)
    return {
        "robust_accuracy": float(robust.mean()),
        "median_perturbation_l2": float(np.median(finite)) if len(finite) else float("inf"),
        "median_relative_perturbation": float(np.median(rel)) if len(rel) else float("inf"),
        "robustness_epsilon": eps,
        "robustness_points": float(len(x)),
    }


def evaluate(
    target: Target, x: Array, y: Array, cfg: RobustnessConfig, seed: int
) -> dict[str, Any]:
    """Robustness metrics plus the attack and budget that produced them."""
    eps = cfg.epsilon
    sigma = feature_scale(x, cfg.scale)
    parts = target.linear_parts() if target.raw is not None else None
    if parts is not None:
        pred = target.labels(x)
        idx = np.searchsorted(target.classes, pred)
        # in scaled coordinates z = x / sigma the weights become w * sigma
        dist = linear_margins(parts[0] * sigma, parts[1], x / sigma, idx)
        metrics = _summary(dist, pred == y, x / sigma, eps)
        return {
            "metrics": metrics,
            "attack": "exact minimal L2 perturbation (affine model, closed form)",
            "budget": {"queries": target.queries, "seconds": 0.0, "scale": cfg.scale},
            "exact": True,
        }
    if cfg.attack == "line_search":
        return _line_search(target, x / sigma, y, sigma, cfg, seed)
    return _hopskipjump(target, x / sigma, y, sigma, cfg, seed)


def _hopskipjump(
    target: Target, x: Array, y: Array, sigma: Array, cfg: RobustnessConfig, seed: int
) -> dict[str, Any]:
    """Attack in scaled coordinates ``x`` (= inputs / ``sigma``)."""
    try:
        from art.attacks.evasion import HopSkipJump  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from art.estimators.classification import BlackBoxClassifier  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return _line_search(target, x, y, sigma, cfg, seed)

    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x), size=min(cfg.samples, len(x)), replace=False)
    xs, ys = x[pick], y[pick]
    t = target.with_budget(cfg.max_queries)
    classes = list(target.classes)
    n_cls = len(classes)

    def one_hot(rows: Array) -> Array:
        lab = t.labels(np.asarray(rows, dtype=np.float64) * sigma)
        out = np.zeros((len(rows), n_cls))
        out[np.arange(len(rows)), np.searchsorted(target.classes, lab)] = 1.0
        return out

    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    clf = BlackBoxClassifier(
        one_hot, input_shape=(x.shape[1],), nb_classes=n_cls,
        clip_values=(float((lo - span).min()), float((hi + span).max())),
    )  # fmt: skip
    attack = HopSkipJump(
        clf, targeted=False, norm=2, max_iter=8, max_eval=200, init_eval=20, init_size=50,
        verbose=False,
    )  # fmt: skip
    start = time.monotonic()
    pred0 = t.labels(xs * sigma)
    dist = np.full(len(xs), np.inf)
    attacked = done = 0
    saved = np.random.get_state()  # HopSkipJump draws from numpy's global RNG
    np.random.seed(seed)
    try:
        for i in range(len(xs)):
            if pred0[i] != ys[i]:
                dist[i], done = 0.0, i + 1
                continue
            if time.monotonic() - start > cfg.max_seconds or t.queries >= cfg.max_queries:
                break
            try:
                adv = attack.generate(xs[i : i + 1])
            except BudgetExceeded:
                break
            attacked, done = attacked + 1, i + 1
            if t.predict_labels(adv * sigma)[0] != pred0[i]:  # verification, not counted
                dist[i] = float(np.linalg.norm(adv[0] - xs[i]))
    finally:
        np.random.set_state(saved)
    return _black_box_result(
        "HopSkipJump (ART 1.x, decision-based, L2, untargeted); robust accuracy is an upper bound",
        dist, pred0, ys, xs, done, attacked, t, cfg, start,
    )  # fmt: skip


def _line_search(
    target: Target, x: Array, y: Array, sigma: Array, cfg: RobustnessConfig, seed: int
) -> dict[str, Any]:
    """Own budgeted decision-based search (used when ART is missing, or on request).

    For each point: random unit directions in scaled space; along each, double the step until
    the label changes (up to 16 × the data's scale), then bisect 12 times. The smallest flip
    found is an upper bound on the minimal perturbation, like HopSkipJump's.
    """
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x), size=min(cfg.samples, len(x)), replace=False)
    xs, ys = x[pick], y[pick]
    t = target.with_budget(cfg.max_queries)
    start = time.monotonic()
    pred0 = t.labels(xs * sigma)
    dist = np.full(len(xs), np.inf)
    attacked = done = 0
    try:
        for i in range(len(xs)):
            if pred0[i] != ys[i]:
                dist[i], done = 0.0, i + 1
                continue
            if time.monotonic() - start > cfg.max_seconds:
                break
            attacked += 1
            dirs = rng.normal(size=(20, x.shape[1]))
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
            steps = 0.25 * 2.0 ** np.arange(8)
            probes = xs[i] + steps[None, :, None] * dirs[:, None, :]
            flips = t.labels(probes.reshape(-1, x.shape[1]) * sigma).reshape(20, 8) != pred0[i]
            for k in np.flatnonzero(flips.any(axis=1)):
                hi = steps[int(np.argmax(flips[k]))]
                lo = 0.0
                for _ in range(12):
                    mid = (lo + hi) / 2
                    if t.labels(((xs[i] + mid * dirs[k]) * sigma)[None, :])[0] != pred0[i]:
                        hi = mid
                    else:
                        lo = mid
                dist[i] = min(dist[i], hi)
            done = i + 1
    except BudgetExceeded:
        pass
    return _black_box_result(
        "random-direction line search with bisection (decision-based, L2, untargeted); "
        "robust accuracy is an upper bound",
        dist, pred0, ys, xs, done, attacked, t, cfg, start,
    )  # fmt: skip


def _black_box_result(
    attack: str,
    dist: Any,
    pred0: Any,
    ys: Any,
    xs: Any,
    done: int,
    attacked: int,
    t: Any,
    cfg: Any,
    start: float,
) -> dict[str, Any]:
    """Metrics over the points attacked so far, with the attack and the budget it used."""
    considered = slice(0, done)
    correct = (pred0 == ys)[considered]
    metrics = _summary(dist[considered], correct, xs[considered], cfg.epsilon)
    metrics["robustness_points"] = float(done)
    return {
        "metrics": metrics,
        "attack": attack,
        "budget": {
            "queries": t.queries,
            "max_queries": cfg.max_queries,
            "seconds": round(time.monotonic() - start, 3),
            "max_seconds": cfg.max_seconds,
            "points_attacked": attacked,
            "scale": cfg.scale,
        },
        "exact": False,
    }
