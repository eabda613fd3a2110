"""Red team: the embedded guarded registry (``guard+sqlite://``) against hostile client calls.

Every protected target must need the promotion gate whatever MlflowClient call writes it:
creating a version or a registered model *with* a protected tag, copying a promoted version,
or spelling a server-only tag key in another case. Each denial is asserted with its reason,
and the registry is checked to be unchanged afterwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlflow_guard.core import approvals
from mlflow_guard.core.approvals import Target
from tests.conftest import KeyRing
from tests.plugins.conftest import log_sklearn, use_embedded_registry

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Embedded:
    """A guarded SQLite registry with a policy protecting tag ``release``."""

    client: Any
    approvals: Path
    keyring: KeyRing


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file for the module (MLflow's migrations take seconds)."""
    return tmp_path_factory.mktemp("redteam-embedded") / "mlflow.db"


@pytest.fixture
def emb(db: Path, keyring: KeyRing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Embedded:
    import mlflow

    policy = tmp_path / "guard.yaml"
    policy.write_text(yaml.safe_dump({
        "version": 1,
        "keys": [
            {"id": "ci", "public_key": str(keyring["model"].public), "purposes": ["model"]},
            {"id": "bob", "public_key": str(keyring["approval"].public), "purposes": ["approval"]},
        ],
        "roles": {"reviewer": ["bob"]},
        "registry": {
            "require_signature": True,
            "scan_model_files": True,
            "protected": [
                {"tag": "release", "approvals": 1, "approver_roles": ["reviewer"]},
                {"alias": "production", "approvals": 1, "approver_roles": ["reviewer"]},
            ],
        },
    }))  # fmt: skip
    folder = tmp_path / "approvals"
    folder.mkdir()
    use_embedded_registry(
        monkeypatch, policy, db, signing_key=keyring["model"].private, approvals=folder
    )
    return Embedded(mlflow.MlflowClient(), folder, keyring)


def _versions(client: Any, name: str) -> dict[str, dict[str, str]]:
    return {str(v.version): dict(v.tags) for v in client.search_model_versions(f"name='{name}'")}


def _models(client: Any) -> set[str]:
    return {m.name for m in client.search_registered_models()}


def _approve(e: Embedded, name: str, version: str, target: Target, digest: str) -> None:
    signer = e.keyring["approval"].signer
    env = approvals.create_signed(name, version, target, digest, signer)
    (e.approvals / f"{name}-{version}.json").write_text(json.dumps(env.to_json()))


def test_version_created_with_protected_tag_is_refused(emb: Embedded) -> None:
    from mlflow.exceptions import MlflowException

    run_id, model_uri, _ = log_sklearn("rt-create-tag")
    before = _versions(emb.client, "rt-create-tag")
    for key in ("release", "Release"):
        with pytest.raises(MlflowException, match=rf"protected tag:{key}") as e:
            emb.client.create_model_version(
                "rt-create-tag", model_uri, run_id=run_id, tags={key: "yes"}
            )
        assert "request a promotion" in str(e.value)
    assert _versions(emb.client, "rt-create-tag") == before


def test_registered_model_created_with_protected_tag_is_refused(emb: Embedded) -> None:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=r"protected tag:RELEASE") as e:
        emb.client.create_registered_model("rt-rm-tag", tags={"RELEASE": "yes"})
    assert "request a promotion" in str(e.value)
    with pytest.raises(MlflowException, match=r"tags under mlflow_guard\. are written by guard"):
        emb.client.create_registered_model("rt-rm-tag", tags={"mlflow_guard.signer": "ci"})
    assert "rt-rm-tag" not in _models(emb.client)


def test_copy_of_a_released_version_does_not_carry_the_protected_tag(emb: Embedded) -> None:
    from mlflow.exceptions import MlflowException

    log_sklearn("rt-copy-src")
    digest = emb.client.get_model_version("rt-copy-src", "1").tags["mlflow_guard.root_sha256"]
    _approve(emb, "rt-copy-src", "1", Target("tag", "release"), digest)
    emb.client.set_model_version_tag("rt-copy-src", "1", "release", "yes")  # approved: allowed

    with pytest.raises(MlflowException, match=r"protected tag:release"):
        emb.client.copy_model_version("models:/rt-copy-src/1", "rt-copy-dst")
    assert _versions(emb.client, "rt-copy-dst") == {}


def test_server_only_tags_refused_in_any_case(emb: Embedded) -> None:
    from mlflow.exceptions import MlflowException

    run_id, model_uri, _ = log_sklearn("rt-case")
    before = _versions(emb.client, "rt-case")
    for key in ("MLFLOW_GUARD.root_sha256", "Mlflow_Guard.signer"):
        with pytest.raises(MlflowException, match=r"are written by guard"):
            emb.client.create_model_version("rt-case", model_uri, run_id=run_id, tags={key: "x"})
        with pytest.raises(MlflowException, match=r"are written by guard"):
            emb.client.set_model_version_tag("rt-case", "1", key, "x")
        with pytest.raises(MlflowException, match=r"are written by guard"):
            emb.client.set_tag(run_id, key, "x")
    assert _versions(emb.client, "rt-case") == before
    assert not any(
        k.lower().startswith("mlflow_guard") for k in emb.client.get_run(run_id).data.tags
    )
