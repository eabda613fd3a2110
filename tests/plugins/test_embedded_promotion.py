"""Embedded mode (``guard+sqlite``): protected aliases/stages/tags need signed approvals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlflow_guard.core import approvals, keys
from mlflow_guard.core.approvals import Target
from tests.conftest import KeyRing
from tests.plugins.conftest import Workspace, log_sklearn

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded(
    in_workspace: Workspace,
    tracking_db: Path,
    keyring: KeyRing,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> dict[str, Path]:
    import mlflow

    ring = {n: keys.generate() for n in ("bob", "carol")}
    for n, k in ring.items():
        keys.write_keypair(tmp_path, n, k)
    policy = tmp_path / "guard.yaml"
    policy.write_text(yaml.safe_dump({
        "version": 1,
        "keys": [
            {"id": "ci", "public_key": str(keyring["model"].public), "purposes": ["model"]},
            {"id": "bob", "public_key": str(tmp_path / "bob.pub"), "purposes": ["approval"]},
            {"id": "carol", "public_key": str(tmp_path / "carol.pub"), "purposes": ["approval"]},
        ],
        "roles": {"reviewer": ["bob", "carol"]},
        "registry": {
            "require_signature": True,
            "scan_model_files": True,
            "protected": [
                {"alias": "production", "approvals": 2, "approver_roles": ["reviewer"],
                 "gates": {"metrics": {"accuracy": ">= 0.5"}}},
                {"stage": "Production", "approvals": 2, "approver_roles": ["reviewer"]},
            ],
        },
    }))  # fmt: skip
    approvals_dir = tmp_path / "approvals"
    approvals_dir.mkdir()
    monkeypatch.setenv("MLFLOW_GUARD_POLICY", str(policy))
    monkeypatch.setenv("MLFLOW_GUARD_APPROVALS_DIR", str(approvals_dir))
    uri = f"guard+sqlite:///{tracking_db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return {"dir": approvals_dir, "bob": tmp_path / "bob.key", "carol": tmp_path / "carol.key"}


def _approve(env: dict[str, Path], who: str, name: str, digest: str, **kw: object) -> None:
    signer = keys.Signer(keys.load_private_key(env[who]))
    target = kw.pop("target", Target("alias", "production"))
    envl = approvals.create_signed(name, "1", target, digest, signer, **kw)  # type: ignore[arg-type]
    (env["dir"] / f"{who}-{target.kind}.json").write_text(json.dumps(envl.to_json()))


def _aliases(client: object) -> dict[str, str]:
    rm = client.get_registered_model("fraud-embedded")  # type: ignore[attr-defined]
    return {k: str(v) for k, v in rm.aliases.items()}


def test_embedded_promotion_needs_signed_approvals(embedded: dict[str, Path]) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    run_id, _, art = log_sklearn("fraud-embedded")
    client.log_metric(run_id, "accuracy", 0.97)
    mv = client.get_model_version("fraud-embedded", "1")
    digest = mv.tags["mlflow_guard.root_sha256"]

    with pytest.raises(MlflowException, match="0 of 2 required approvals") as e:
        client.set_registered_model_alias("fraud-embedded", "production", "1")
    assert "alias:production for fraud-embedded version 1 refused" in str(e.value)
    with pytest.raises(MlflowException, match="0 of 2 required approvals"):
        client.set_registered_model_alias("fraud-embedded", "PRODUCTION", "1")
    with pytest.raises(MlflowException, match="0 of 2 required approvals"):
        client.transition_model_version_stage("fraud-embedded", "1", "production")
    assert _aliases(client) == {}

    _approve(embedded, "bob", "fraud-embedded", digest)
    _approve(embedded, "carol", "fraud-embedded", "ab" * 32)  # another digest: does not count
    with pytest.raises(MlflowException, match="1 of 2 required approvals") as e:
        client.set_registered_model_alias("fraud-embedded", "production", "1")
    assert "now hash to" in str(e.value)
    _approve(embedded, "carol", "fraud-embedded", digest)
    client.set_registered_model_alias("fraud-embedded", "production", "1")
    assert _aliases(client) == {"production": "1"}

    with pytest.raises(MlflowException, match="refused to delete protected alias:production"):
        client.delete_registered_model_alias("fraud-embedded", "production")
    with pytest.raises(MlflowException, match="refused to delete the holder of"):
        client.delete_model_version("fraud-embedded", "1")
    with pytest.raises(MlflowException, match="refused to rename the holder of"):
        client.rename_registered_model("fraud-embedded", "other")
    assert _aliases(client) == {"production": "1"}

    # Tampering with the artifacts afterwards blocks the next promotion.
    target = next(p for p in Path(art).iterdir() if p.name in ("model.pkl", "model.skops"))
    target.write_bytes(target.read_bytes() + b"\0")
    _approve(embedded, "bob", "fraud-embedded", digest, target=Target("stage", "Production"))
    _approve(embedded, "carol", "fraud-embedded", digest, target=Target("stage", "Production"))
    with pytest.raises(MlflowException, match="artifacts changed since registration"):
        client.transition_model_version_stage("fraud-embedded", "1", "Production", False)
    assert client.get_model_version("fraud-embedded", "1").current_stage == "None"
