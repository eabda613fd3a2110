"""mlflow-guard: lineage, signing, access control and feedback-data authentication for MLflow.

Importing the package is cheap: the public helpers below are loaded on first use.

- :func:`load_model` — verified loading (download, verify signature, scan, then deserialize).
- :func:`enable_verified_loading` — opt-in: plain ``mlflow.<flavor>.load_model`` verifies too.
- :func:`enable` — install the log-time signing hook without starting a run first.
"""

from __future__ import annotations

from typing import Any

__all__ = ["base_model", "enable", "enable_verified_loading", "load_model"]

_LAZY = {
    "load_model": ("mlflow_guard.loading", "load_model"),
    "enable_verified_loading": ("mlflow_guard.loading", "enable_verified_loading"),
    "base_model": ("mlflow_guard.lineage.base_models", "base_model"),
    "enable": ("mlflow_guard.plugins.logtime", "install"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlflow_guard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
