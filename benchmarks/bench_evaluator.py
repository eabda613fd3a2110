"""Time of the ``guard`` risk evaluator per model type on breast-cancer data (no download).

Runs :func:`mlflow_guard.evaluation.assess.assess` (the evaluator without MLflow's own logging
overhead) with default budgets and prints a markdown table with seconds per risk and the total
as a ratio against the logistic-regression baseline, all measured in one run.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlflow_guard.evaluation import assess, target
from mlflow_guard.evaluation.config import GuardEvalConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

MODELS = {
    "logistic regression (baseline)": lambda: make_pipeline(
        StandardScaler(), LogisticRegression(C=0.1, max_iter=1000)
    ),
    "decision tree (depth 5)": lambda: DecisionTreeClassifier(max_depth=5, random_state=0),
    "random forest (100 trees)": lambda: RandomForestClassifier(n_estimators=100, random_state=0),
    "gradient boosting (100)": lambda: GradientBoostingClassifier(random_state=0),
    "k-nearest neighbours (5)": lambda: make_pipeline(StandardScaler(), KNeighborsClassifier()),
}


def main() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    xt, xe, yt, ye = train_test_split(x, y, test_size=0.5, random_state=0, stratify=y)
    cfg = GuardEvalConfig(sensitive_features=[0, 1])
    rows = []
    for name, make in MODELS.items():
        model = make().fit(xt, yt)
        start = time.perf_counter()
        out = assess.assess(target.from_estimator(model), xe, ye, cfg, train=(xt, yt))
        total = time.perf_counter() - start
        rows.append((name, out, total))
    base = rows[0][2]
    print(
        f"breast cancer, {len(xt)} members / {len(xe)} holdout, default budgets "
        f"(black-box attack: 20 points, ≤ 20,000 queries, ≤ 10 s); {os.cpu_count()} CPUs, "
        "machine shared with other agents; one run.\n"
    )
    print("| model | ML01 attack | ML01 s | ML04 s | ML03 s | ML05 s | total s | vs baseline |"
          " membership AUC | robust acc. |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, out, total in rows:
        rob = out["robustness"]
        kind = (
            "exact (closed form)"
            if rob["exact"]
            else f"HopSkipJump, {rob['budget']['queries']} queries"
        )
        print(
            f"| {name} | {kind} | {rob['seconds']:.2f} | {out['membership']['seconds']:.2f} | "
            f"{out['inversion']['seconds']:.2f} | {out['extraction']['seconds']:.2f} | "
            f"{total:.2f} | {total / base:.1f}× | "
            f"{out['membership']['metrics']['membership_auc']:.3f} | "
            f"{rob['metrics']['robust_accuracy']:.3f} |"
        )


if __name__ == "__main__":
    main()
