"""End to end: ``mlflow.models.evaluate(..., evaluators=["guard"])`` on a logged sklearn model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory: pytest.TempPathFactory, logreg: Any) -> Iterator[str]:
    """The logistic regression logged once to a throw-away SQLite tracking store."""
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}")
    exp = mlflow.set_experiment("guard-eval")
    with mlflow.start_run(experiment_id=exp.experiment_id):
        info = mlflow.sklearn.log_model(logreg, name="model", pip_requirements=["scikit-learn"])
    yield info.model_uri
    mlflow.set_tracking_uri(before)


@pytest.mark.slow
def test_guard_evaluator_logs_metrics_tags_and_report(
    tmp_path: Path, split: Any, model_uri: str
) -> None:
    import mlflow
    import pandas as pd

    xt, yt, xe, ye = split
    cols = [f"f{i}" for i in range(xt.shape[1])]
    train = pd.DataFrame(xt, columns=cols).assign(label=yt)
    holdout = pd.DataFrame(xe, columns=cols).assign(label=ye)
    with mlflow.start_run() as run:
        result = mlflow.models.evaluate(
            model_uri,
            holdout,
            targets="label",
            model_type="classifier",
            evaluators=["guard"],
            evaluator_config={"guard": {"train_data": train, "sensitive_features": ["f0"]}},
        )
    metrics = mlflow.get_run(run.info.run_id).data.metrics
    for key in (
        "guard.robust_accuracy",
        "guard.membership_auc",
        "guard.membership_epsilon_lb",
        "guard.inversion_gain_max",
        "guard.extraction_fidelity",
    ):
        assert key in metrics
        assert metrics[key] == pytest.approx(result.metrics[key])
    assert metrics["guard.extraction_linear_proba_exposed"] == 1.0
    tags = mlflow.get_run(run.info.run_id).data.tags
    assert "exact minimal" in tags["guard.robustness.attack"]
    assert json.loads(tags["guard.membership.budget"])["members"] > 0
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="guard_risk_report.json", dst_path=str(tmp_path)
    )
    report = json.loads(Path(local).read_text())
    assert set(report["risks"]) == {"robustness", "membership", "inversion", "extraction"}
    seconds = sum(r["seconds"] for r in report["risks"].values())
    assert seconds <= 15.0, f"logistic regression evaluation took {seconds:.1f}s"


@pytest.mark.slow
def test_unknown_config_key_is_rejected(split: Any, model_uri: str) -> None:
    import mlflow
    import pandas as pd

    _, _, xe, ye = split
    holdout = pd.DataFrame(xe, columns=[f"f{i}" for i in range(xe.shape[1])]).assign(label=ye)
    with mlflow.start_run(), pytest.raises(Exception, match=r"budgett"):
        mlflow.models.evaluate(
            model_uri, holdout, targets="label", model_type="classifier",
            evaluators=["guard"], evaluator_config={"guard": {"budgett": 1}},
        )  # fmt: skip
