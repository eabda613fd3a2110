"""The ``guard`` model evaluator for ``mlflow.models.evaluate`` (OWASP ML01, ML03, ML04, ML05).

Usage::

    mlflow.models.evaluate(
        model_uri, holdout_df, targets="label", model_type="classifier",
        evaluators=["guard"],
        evaluator_config={"guard": {"train_data": train_df, "sensitive_features": ["age"]}},
    )

logs ``guard.*`` metrics and a ``guard_risk_report.json``/``.html`` artifact in which every
metric names the attack and the budget that produced it. The plugin module
(:mod:`mlflow_guard.evaluation.evaluator`) imports numpy/scikit-learn only when it evaluates.
"""
