"""Entry point of the ``guard+…`` artifact repositories.

MLflow loads artifact-repository entry points while ``mlflow.store.artifact`` is still being
imported; a plugin module that imports MLflow's artifact classes at top level fails with a
circular import and MLflow only warns. So the entry point is this function, which imports the
real repository class when a ``guard+`` URI is first used.
"""

from __future__ import annotations

from typing import Any


def guard_artifact_repository(
    artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
) -> Any:
    """Build a :class:`~mlflow_guard.encryption.artifact_repo.GuardArtifactRepository`."""
    from mlflow_guard.encryption.artifact_repo import GuardArtifactRepository

    return GuardArtifactRepository(
        artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri
    )
