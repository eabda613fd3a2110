"""A copy (``models:/NAME/VERSION`` source) is decided with one read of the source version.

Real MLflow registry store (SQLite); the backend only counts the lookups it passes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlflow_guard.core.access import Principal
from mlflow_guard.core.policy import parse_policy
from mlflow_guard.server import resolve
from mlflow_guard.server.engine import Guard
from mlflow_guard.server.request_view import RequestView
from mlflow_guard.server.routes import spec_for

POLICY = parse_policy(
    {
        "version": 1,
        "roles": {"ds": ["alice"]},
        "access": [{"role": "ds", "allow": ["read", "register"], "models": "fraud-*"}],
    },
    source=Path("guard.yaml"),
)


class CountingBackend(resolve.Backend):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, str]] = []

    def model_version(self, name: str, version: str) -> Any:
        self.reads.append((name, version))
        return super().model_version(name, version)


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import mlflow.server.handlers as handlers
    from mlflow.entities.model_registry import ModelVersionTag
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{tmp_path}/registry.db")
    monkeypatch.setattr(handlers, "_model_registry_store", store)
    store.create_registered_model("fraud-src")
    tags = [ModelVersionTag("mlflow_guard.user", "bob"), ModelVersionTag("team", "risk")]
    store.create_model_version("fraud-src", "runs:/0123abcd/model", tags=tags)
    return store


@pytest.mark.parametrize(
    ("tags", "allowed"),
    [
        ([{"key": "mlflow_guard.user", "value": "bob"}, {"key": "team", "value": "risk"}], True),
        ([{"key": "mlflow_guard.user", "value": "mallory"}], False),
        ([{"key": "team", "value": "risk"}], True),
    ],
)
def test_copy_reads_the_source_version_once(
    registry: Any, tags: list[dict[str, str]], allowed: bool
) -> None:
    guard = Guard(POLICY, store=None, users=None, auth_cache_seconds=60)
    backend = guard.backend = CountingBackend()
    body = {"name": "fraud-dst", "source": "models:/fraud-src/1", "tags": tags}
    view = RequestView("POST", "/api/2.0/mlflow/model-versions/create", "_create_model_version")
    view.body = body
    spec = spec_for("_create_model_version")
    assert spec is not None
    decision, _ = guard._authorize(spec, view, Principal("alice"))
    assert decision.allowed is allowed
    if not allowed:
        assert decision.rule == "guard-tag-namespace"
        assert "mlflow_guard.user" in decision.reasons[0]
    assert backend.reads == [("fraud-src", "1")]
