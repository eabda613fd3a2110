"""MLflow client plugins: run context provider, log-time signing hook, guarded local stores.

Modules here are loaded by MLflow through entry points during ``import mlflow``: they import
nothing heavy at module level and do no work until MLflow calls them.
"""
