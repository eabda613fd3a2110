"""ML03 model inversion: attribute-inference gain over the no-model baseline.

For each sensitive feature ``s`` the attacker knows a record's other features and sees the
model's output for it (probabilities, or the label when only labels are exposed). Two attack
models are trained on the attacker's auxiliary data (the evaluation set, non-members) and tested
on the training members: with the model output, and without it (baseline). The gain is the
difference in accuracy at recovering ``s``. Continuous features are binarised at their median
(above/below) so every gain is an accuracy difference on a classification task.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlflow_guard.evaluation.target import Array, Target


def _outputs(t: Target, x: Array) -> Array:
    if t.predict_proba is not None:
        return t.proba(x)
    lab = t.labels(x)
    return np.asarray(lab[:, None] == t.classes[None, :], dtype=np.float64)


def _attack_accuracy(train_x: Array, train_s: Array, test_x: Array, test_s: Array) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_s)) < 2:
        return float((test_s == train_s[0]).mean())
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(train_x, train_s)
    return float((model.predict(test_x) == test_s).mean())


def evaluate(
    target: Target, x_train: Array, x_eval: Array, features: list[int], names: list[str]
) -> dict[str, Any]:
    """Per-feature and maximal inference gain, with the attack and budget."""
    t = target.with_budget(None)
    out_eval, out_train = _outputs(t, x_eval), _outputs(t, x_train)
    metrics: dict[str, float] = {}
    for f in features:
        col_e, col_t = x_eval[:, f], x_train[:, f]
        if len(np.unique(np.concatenate([col_e, col_t]))) > 10:
            med = np.median(col_e)
            col_e, col_t = (col_e > med).astype(float), (col_t > med).astype(float)
        others_e, others_t = np.delete(x_eval, f, axis=1), np.delete(x_train, f, axis=1)
        base = _attack_accuracy(others_e, col_e, others_t, col_t)
        full = _attack_accuracy(
            np.hstack([others_e, out_eval]), col_e, np.hstack([others_t, out_train]), col_t
        )
        metrics[f"inversion_gain.{names[f]}"] = full - base
        metrics[f"inversion_baseline_accuracy.{names[f]}"] = base
    gains = [v for k, v in metrics.items() if k.startswith("inversion_gain.")]
    metrics["inversion_gain_max"] = max(gains) if gains else 0.0
    return {
        "metrics": metrics,
        "attack": "attribute inference: logistic regression on (other features, model output) "
        "vs on other features only, trained on non-members, tested on members",
        "budget": {"queries": t.queries, "features": [names[f] for f in features]},
    }
