"""The guard server app: ``mlflow server --app-name guard``.

Nothing here runs at import time: MLflow loads :func:`mlflow_guard.server.app.create_app`
through the ``mlflow.app`` entry point, and the factory reads configuration when called.
"""
