"""ML05 model extraction: fidelity of a surrogate trained from N queries.

The attacker holds half of the evaluation data (without labels), draws ``N`` query points from
it with small Gaussian jitter, and trains a random-forest surrogate on the answers. Fidelity
is the surrogate's agreement with the model on the other half. When an affine model exposes
probabilities, its log-odds are affine in the input: ``d + 1`` queries recover it exactly by
solving a linear system (Tramèr et al. 2016); that attack is run too and flagged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlflow_guard.evaluation.config import ExtractionConfig
from mlflow_guard.evaluation.target import Array, Target


def _equation_solving(t: Target, x_test: Array, pred_test: np.ndarray[Any, Any]) -> float:
    d = x_test.shape[1]
    rng = np.random.default_rng(1)
    q = x_test.mean(axis=0) + rng.normal(size=(d + 1, d)) * x_test.std(axis=0)
    p = np.clip(t.proba(q), 1e-300, 1.0)
    logits = np.log(p[:, 1:]) - np.log(p[:, :1])
    design = np.hstack([q, np.ones((d + 1, 1))])
    coef = np.linalg.lstsq(design, logits, rcond=None)[0]
    scores = np.hstack(
        [np.zeros((len(x_test), 1)), np.hstack([x_test, np.ones((len(x_test), 1))]) @ coef]
    )
    return float((t.classes[scores.argmax(axis=1)] == pred_test).mean())


def evaluate(target: Target, x_eval: Array, cfg: ExtractionConfig, seed: int) -> dict[str, Any]:
    """Extraction metrics plus the attack and budget that produced them."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_eval))
    pool, test = x_eval[order[: len(order) // 2]], x_eval[order[len(order) // 2 :]]
    t = target.with_budget(cfg.queries + x_eval.shape[1] + 1)
    q = pool[rng.integers(0, len(pool), size=cfg.queries)]
    q = q + rng.normal(size=q.shape) * 0.05 * pool.std(axis=0)
    answers = t.labels(q)
    truth = target.predict_labels(test)  # the model's own answers on held-out points
    if len(np.unique(answers)) < 2:
        fidelity = float((truth == answers[0]).mean())
    else:
        surrogate = RandomForestClassifier(n_estimators=50, n_jobs=1, random_state=seed)
        surrogate.fit(q, answers)
        fidelity = float((surrogate.predict(test) == truth).mean())
    linear = target.raw is not None and target.linear_parts() is not None
    exposed = linear and target.predict_proba is not None
    metrics = {
        "extraction_fidelity": fidelity,
        "extraction_linear_proba_exposed": 1.0 if exposed else 0.0,
    }
    attack = f"surrogate (random forest, 50 trees) trained on {cfg.queries} label queries"
    if exposed:
        metrics["extraction_equation_solving_fidelity"] = _equation_solving(t, test, truth)
        attack += f"; equation-solving on {x_eval.shape[1] + 1} probability queries"
    return {
        "metrics": metrics,
        "attack": attack,
        "budget": {"queries": t.queries, "max_queries": t.budget, "test_points": len(test)},
    }
