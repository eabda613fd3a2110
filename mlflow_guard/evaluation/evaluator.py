"""The MLflow ``guard`` evaluator (entry point ``mlflow.model_evaluator: guard``).

Loaded by MLflow when ``mlflow.models.evaluation`` is first used; numpy and scikit-learn are
imported only inside :meth:`GuardEvaluator.evaluate`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mlflow.models.evaluation.base import EvaluationResult, ModelEvaluator

from mlflow_guard.evaluation.config import GuardEvalConfig

REPORT_JSON = "guard_risk_report.json"
REPORT_HTML = "guard_risk_report.html"


def _train_arrays(cfg: GuardEvalConfig, names: list[str], label: str | None) -> Any:
    import numpy as np
    import pandas as pd

    data = cfg.train_data
    if data is None:
        return None
    if isinstance(data, tuple | list) and len(data) == 2:
        return np.asarray(data[0], dtype=np.float64), np.asarray(data[1])
    if isinstance(data, pd.DataFrame):
        col = cfg.label or label
        if not col or col not in data.columns:
            raise ValueError(
                f"train_data needs the label column {col!r}; pass evaluator_config "
                "{'label': <column>} or train_data=(X, y)"
            )
        return data[names].to_numpy(dtype=np.float64), data[col].to_numpy()
    raise ValueError("train_data must be a pandas DataFrame with the label column, or (X, y)")


class GuardEvaluator(ModelEvaluator):
    """Measures ML01/ML03/ML04/ML05 risks of a classifier; see :mod:`mlflow_guard.evaluation`."""

    name = "guard"

    @classmethod
    def can_evaluate(
        cls, *, model_type: str, evaluator_config: dict[str, Any], **kwargs: Any
    ) -> bool:
        """Classifiers only."""
        return model_type == "classifier"

    def evaluate(
        self,
        *,
        model_type: str,
        dataset: Any,
        run_id: str,
        evaluator_config: dict[str, Any],
        model: Any = None,
        **kwargs: Any,
    ) -> EvaluationResult:
        """Run the assessments, log ``guard.*`` metrics and the report artifacts to ``run_id``."""
        import mlflow
        import numpy as np

        from mlflow_guard.evaluation import assess, report, target

        if model is None:
            raise ValueError("the guard evaluator needs a model to query (not only predictions)")
        cfg = GuardEvalConfig.model_validate(evaluator_config or {})
        names = [str(n) for n in dataset.feature_names]
        x = np.asarray(dataset.features_data, dtype=np.float64)
        y = np.asarray(dataset.labels_data)
        label = getattr(dataset, "targets_name", None)
        tgt = target.from_pyfunc(model, names, x)
        train = _train_arrays(cfg, names, label)
        sections = assess.assess(tgt, x, y, cfg, train=train, feature_names=names)
        metrics = assess.flat_metrics(sections)
        meta = {"model_type": model_type, "rows": len(x), "features": len(names), "seed": cfg.seed}
        client = mlflow.MlflowClient()
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        for key, sec in sections.items():
            text = sec.get("attack") or f"skipped: {sec.get('skipped')}"
            client.set_tag(run_id, f"guard.{key}.attack", str(text)[:5000])
            client.set_tag(run_id, f"guard.{key}.budget", json.dumps(sec.get("budget", {}))[:5000])
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / REPORT_JSON).write_text(report.to_json(sections, meta), encoding="utf-8")
            (Path(tmp) / REPORT_HTML).write_text(report.to_html(sections, meta), encoding="utf-8")
            client.log_artifact(run_id, str(Path(tmp) / REPORT_JSON))
            client.log_artifact(run_id, str(Path(tmp) / REPORT_HTML))
        return EvaluationResult(metrics=metrics, artifacts={}, run_id=run_id)  # type: ignore[no-untyped-call]
