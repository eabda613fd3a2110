# mypy: disable-error-code="no-untyped-call"
"""Guarded SQLAlchemy store subclasses (imported lazily by :mod:`mlflow_guard.plugins.store`).

Subclasses, not wrappers: MLflow checks ``isinstance(store, SqlAlchemyStore)`` in several places.
The registry store runs the registration gate before creating a model version and records the
outcome in ``mlflow_guard.*`` version tags, which callers may not write themselves.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as _RegistryStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as _TrackingStore

from mlflow_guard.core.errors import GuardError
from mlflow_guard.plugins import gate


def _deny(summary: str, reasons: list[str]) -> MlflowException:
    lines = "\n".join(f"  - {r}" for r in reasons)
    return MlflowException(f"mlflow-guard: {summary}:\n{lines}", error_code=PERMISSION_DENIED)


def _refuse_guard_tags(tags: Any) -> None:
    for t in tags or []:
        key = t.key if hasattr(t, "key") else str(t)
        if key.startswith(gate.TAG_PREFIX):
            raise _deny(
                "tag refused", [f"{key}: tags under {gate.TAG_PREFIX} are written by guard"]
            )


class GuardTrackingStore(_TrackingStore):
    """MLflow's SQLAlchemy tracking store; ``mlflow_guard.*`` run tags are guard's alone."""

    def set_tag(self, run_id: str, tag: Any) -> None:
        """Refuse ``mlflow_guard.*`` tags from callers."""
        _refuse_guard_tags([tag])
        super().set_tag(run_id, tag)

    def log_batch(self, run_id: str, metrics: Any, params: Any, tags: Any) -> None:
        """Refuse ``mlflow_guard.*`` tags from callers."""
        _refuse_guard_tags(tags)
        super().log_batch(run_id, metrics, params, tags)

    def create_run(
        self, experiment_id: str, user_id: str, start_time: int, tags: Any, run_name: str
    ) -> Any:
        """Refuse ``mlflow_guard.*`` tags from callers."""
        _refuse_guard_tags(tags)
        return super().create_run(experiment_id, user_id, start_time, tags, run_name)

    def create_logged_model(self, *args: Any, **kwargs: Any) -> Any:
        """Refuse ``mlflow_guard.*`` tags from callers."""
        _refuse_guard_tags(kwargs.get("tags") if "tags" in kwargs else (args[3:4] or [None])[0])
        return super().create_logged_model(*args, **kwargs)

    def set_logged_model_tags(self, model_id: str, tags: Any) -> None:
        """Refuse ``mlflow_guard.*`` tags from callers."""
        _refuse_guard_tags(tags)
        super().set_logged_model_tags(model_id, tags)


class GuardRegistryStore(_RegistryStore):
    """MLflow's SQLAlchemy registry store with the registration gate of the policy."""

    def create_model_version(self, name: str, source: str, *args: Any, **kwargs: Any) -> Any:
        """Run the gate on the source artifacts, then create the version and tag it."""
        tags = kwargs.get("tags") if "tags" in kwargs else (args[1] if len(args) > 1 else None)
        _refuse_guard_tags(tags)
        result = self._gate(source)
        if not result.allowed:
            raise _deny(f"registration of a version of '{name}' denied", result.reasons)
        mv = super().create_model_version(name, source, *args, **kwargs)
        from mlflow.entities.model_registry import ModelVersionTag

        for k, v in result.tags.items():
            super().set_model_version_tag(name, mv.version, ModelVersionTag(k, v))
        return self.get_model_version(name, mv.version)

    def set_model_version_tag(self, name: str, version: str, tag: Any) -> None:
        """Refuse ``mlflow_guard.*`` tags from callers."""
        _refuse_guard_tags([tag])
        super().set_model_version_tag(name, version, tag)

    def set_registered_model_tag(self, name: str, tag: Any) -> None:
        """Refuse ``mlflow_guard.*`` tags from callers."""
        _refuse_guard_tags([tag])
        super().set_registered_model_tag(name, tag)

    def _gate(self, source: str) -> gate.GateResult:
        from mlflow_guard.core.policy import load_policy
        from mlflow_guard.loading import download, trust_store

        try:
            policy = load_policy()
            trust = trust_store()
        except GuardError as e:
            return gate.GateResult(False, [f"policy: {e.summary}; {e.hint}"])
        tmp = tempfile.mkdtemp(prefix="mlflow-guard-gate-")
        try:
            try:
                local = download(source, Path(tmp))
            except Exception as e:  # an unreadable source is a denial, not a crash
                return gate.GateResult(False, [f"source: cannot read {source}: {e}"])
            return gate.check_registration(local, policy, trust)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
