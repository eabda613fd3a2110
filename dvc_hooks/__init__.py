"""DVC adapter of mlflow-guard: signed dataset versions, data validation, environment check and
blocking git hooks (``dvc-guard``). Reads DVC's files directly; never imports DVC or MLflow."""
