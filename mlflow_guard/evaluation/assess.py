"""Run every enabled risk assessment on a target; the MLflow-free entry point tests use."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mlflow_guard.evaluation import extraction, inversion, membership, robustness
from mlflow_guard.evaluation.config import GuardEvalConfig
from mlflow_guard.evaluation.target import Array, Target


def _feature_indices(wanted: list[str | int], names: list[str]) -> list[int]:
    out = []
    for f in wanted:
        if isinstance(f, int) and 0 <= f < len(names):
            out.append(f)
        elif isinstance(f, str) and f in names:
            out.append(names.index(f))
        else:
            raise ValueError(f"sensitive feature {f!r} is not a column of the data ({names[:5]}…)")
    return out


def assess(
    target: Target,
    x_eval: Array,
    y_eval: np.ndarray[Any, Any],
    cfg: GuardEvalConfig,
    *,
    train: tuple[Array, np.ndarray[Any, Any]] | None = None,
    feature_names: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Return ``{risk: {"metrics", "attack", "budget", "seconds"} | {"skipped": reason}}``."""
    names = feature_names or [f"x{i}" for i in range(x_eval.shape[1])]
    out: dict[str, dict[str, Any]] = {}

    def timed(key: str, fn: Any) -> None:
        start = time.monotonic()
        out[key] = fn()
        out[key]["seconds"] = round(time.monotonic() - start, 3)

    if cfg.robustness.enabled:
        timed(
            "robustness",
            lambda: robustness.evaluate(target, x_eval, y_eval, cfg.robustness, cfg.seed),
        )
    no_train = "no train_data in evaluator_config (members are needed)"
    if cfg.membership.enabled:
        if train is None:
            out["membership"] = {"skipped": no_train}
        else:
            timed("membership", lambda: membership.evaluate(
                target, train[0], train[1], x_eval, y_eval, cfg.membership, cfg.seed))  # fmt: skip
    if cfg.inversion.enabled:
        if train is None:
            out["inversion"] = {"skipped": no_train}
        elif not cfg.sensitive_features:
            out["inversion"] = {"skipped": "no sensitive_features in evaluator_config"}
        else:
            idx = _feature_indices(cfg.sensitive_features, names)
            timed("inversion", lambda: inversion.evaluate(target, train[0], x_eval, idx, names))
    if cfg.extraction.enabled:
        timed("extraction", lambda: extraction.evaluate(target, x_eval, cfg.extraction, cfg.seed))
    return out


def flat_metrics(sections: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``guard.<name>`` → value for every finite metric."""
    out = {}
    for sec in sections.values():
        for k, v in sec.get("metrics", {}).items():
            if isinstance(v, float | int) and np.isfinite(v):
                out[f"guard.{k}"] = float(v)
    return out
