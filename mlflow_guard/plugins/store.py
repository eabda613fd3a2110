# mypy: disable-error-code="no-untyped-call"
"""Store builders for the ``guard+sqlite://`` / ``guard+postgresql://`` schemes (embedded mode).

Entry points ``mlflow.tracking_store`` and ``mlflow.model_registry_store`` point at the two
functions below. MLflow loads entry points during ``import mlflow``; importing
``SqlAlchemyStore`` at that moment fails with a circular import and MLflow only *warns*, so the
scheme would silently vanish. The store classes are therefore imported inside the functions.
"""

from __future__ import annotations

from typing import Any

SCHEME_PREFIX = "guard+"


def database_uri(store_uri: str) -> str:
    """``guard+sqlite:///mlflow.db`` → ``sqlite:///mlflow.db``.

    ``guard+postgresql://`` names no driver; SQLAlchemy 2.1 then picks psycopg 3. When only
    psycopg2 is installed, it is named explicitly (``postgresql+psycopg2://``).
    """
    import importlib.util

    uri = store_uri[len(SCHEME_PREFIX) :] if store_uri.startswith(SCHEME_PREFIX) else store_uri
    if (
        uri.startswith("postgresql://")
        and importlib.util.find_spec("psycopg") is None
        and importlib.util.find_spec("psycopg2") is not None
    ):
        uri = "postgresql+psycopg2://" + uri[len("postgresql://") :]
    return uri


def tracking_store(store_uri: str, artifact_uri: str | None = None) -> Any:
    """Build the guarded tracking store (MLflow passes ``artifact_uri=None`` on the client)."""
    import os

    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH

    from mlflow_guard.plugins import _stores, logtime

    logtime.install()
    if artifact_uri is None:
        artifact_uri = os.environ.get(
            "_MLFLOW_SERVER_ARTIFACT_ROOT", DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
        )
    return _stores.GuardTrackingStore(database_uri(store_uri), artifact_uri)


def registry_store(store_uri: str, tracking_uri: str | None = None) -> Any:
    """Build the guarded model-registry store (runs the registration gate on each version)."""
    from mlflow_guard.plugins import _stores, logtime

    logtime.install()
    return _stores.GuardRegistryStore(database_uri(store_uri))
