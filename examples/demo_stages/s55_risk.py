"""Stage: risk evaluation (ML01/03/04/05) with the `guard` evaluator, and a promotion gate on it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

from demo_stages._ctx import Context, DemoFailure

TITLE = "Risk evaluation: mlflow.models.evaluate(evaluators=['guard']) and a gate on its metrics"

EVAL = textwrap.dedent("""\
    import json, sys
    from pathlib import Path

    import mlflow
    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    work = Path(sys.argv[1])
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    mlflow.set_experiment("risk")
    data = load_breast_cancer(as_frame=True)
    df = data.frame.rename(columns={"target": "label"})
    train, hold = train_test_split(df, test_size=0.3, random_state=0)
    x = train.drop(columns="label")
    models = {
        "logistic regression (C=0.1)": LogisticRegression(C=0.1, max_iter=5000),
        "random forest (overfit)": RandomForestClassifier(n_estimators=50, bootstrap=False,
                                                          random_state=0),
    }
    out = {}
    for name, est in models.items():
        est.fit(x, train["label"])
        with mlflow.start_run(run_name=name):
            info = mlflow.sklearn.log_model(est, name="model", serialization_format="pickle")
            res = mlflow.models.evaluate(
                info.model_uri, hold, targets="label", model_type="classifier",
                evaluators=["guard"],
                evaluator_config={"guard": {
                    "train_data": train,
                    "robustness": {"samples": 10, "max_seconds": 5},
                    "membership": {"bootstrap_rounds": 50},
                    "extraction": {"queries": 200},
                }},
            )
            m = res.metrics
            out[name] = {k: m[k] for k in (
                "guard.robust_accuracy", "guard.median_perturbation_l2", "guard.membership_auc",
                "guard.membership_advantage", "guard.extraction_fidelity",
                "guard.extraction_linear_proba_exposed") if k in m}
    print(json.dumps(out))
""")


def run(ctx: Context) -> None:
    """Evaluate two models, print the risk table, and show a membership-AUC gate deciding."""
    import json

    from mlflow_guard.core import approvals
    from mlflow_guard.core.approvals import Approval, PromotionSubject, Target
    from mlflow_guard.core.policy import ProtectedAlias

    work = ctx.root / "risk"
    work.mkdir()
    script = work / "evaluate.py"
    script.write_text(EVAL)
    print("$ python evaluate.py   (mlflow.models.evaluate(..., evaluators=['guard']))")
    proc = subprocess.run([sys.executable, str(script), str(work)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise DemoFailure(f"evaluation failed:\n{proc.stderr[-3000:]}")
    results: dict[str, dict[str, float]] = json.loads(proc.stdout.strip().splitlines()[-1])
    cols = ["guard.robust_accuracy", "guard.membership_auc", "guard.membership_advantage",
            "guard.extraction_fidelity"]  # fmt: skip
    print("\n| model | " + " | ".join(c.removeprefix("guard.") for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, metrics in results.items():
        row = " | ".join(f"{metrics[c]:.3f}" if c in metrics else "n/a" for c in cols)
        print(f"| {name} | {row} |")

    rule = ProtectedAlias(
        alias="production",
        approvals=1,
        approver_roles=["reviewer"],
        gates={"metrics": {"guard.membership_auc": "<= 0.6", "guard.robust_accuracy": ">= 0.4"}},
    )
    print(f"\npolicy gate for alias 'production': {dict(rule.gates.metrics)}")
    now = datetime.now(UTC)
    for name, metrics in results.items():
        subject = PromotionSubject(
            model="fraud", version="1", target=Target("alias", "production"),
            root_digest="0" * 64, run_creator="alice", version_creator="alice",
            metrics=metrics,
        )  # fmt: skip
        ok = Approval(
            model="fraud", version="1", target=Target("alias", "production"),
            root_digest="0" * 64, approver="bob", decision="approve",
            issued_at=now - timedelta(minutes=1), kind="authenticated",
        )  # fmt: skip
        status = approvals.evaluate(subject, rule, [ok], {"reviewer": ["bob"]}, now=now)
        verdict = "ALLOWED" if status.decision.allowed else "REFUSED"
        print(f"{name}: promotion {verdict}")
        for g in status.gates:
            print(f"    {g.describe()}")
    lr, rf = results["logistic regression (C=0.1)"], results["random forest (overfit)"]
    if not rf.get("guard.membership_auc", 0) > lr.get("guard.membership_auc", 1):
        raise DemoFailure("the overfit forest should leak membership more than the regularized LR")
