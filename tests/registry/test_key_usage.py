"""``mlflow-guard keys usage``: what a key signed, and untrusted signers still in production.

A real MLflow registry (``guard+sqlite`` in a temp dir), models signed at log time by two
model keys, a protected ``production`` alias set through the embedded promotion gate; the key
is then revoked in the policy, as after a compromise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlflow_guard.cli import run
from mlflow_guard.core import keys
from tests.plugins.conftest import use_embedded_registry

pytestmark = pytest.mark.slow


def _policy(path: Path, pubs: dict[str, Path], revoked: list[str]) -> None:
    path.write_text(yaml.safe_dump({
        "version": 1,
        "keys": [{"id": n, "public_key": str(p), "purposes": ["model"]} for n, p in pubs.items()],
        "revoked": revoked,
        "registry": {
            "require_signature": True,
            "protected": [{"alias": "production", "approvals": 0}],
        },
    }))  # fmt: skip


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Two model keys (old, ci) in the policy; an embedded guarded registry."""
    privs, pubs = {}, {}
    for name in ("old", "ci"):
        privs[name], pubs[name] = keys.write_keypair(tmp_path / "keys", name, keys.generate())
    policy = tmp_path / "guard.yaml"
    _policy(policy, pubs, [])
    uri = use_embedded_registry(monkeypatch, policy, tmp_path / "mlflow.db")
    return {"policy": policy, "privs": privs, "pubs": pubs, "uri": uri}


def _register(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, key: str, name: str) -> None:
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setenv("MLFLOW_GUARD_SIGNING_KEY", str(env["privs"][key]))
    with mlflow.start_run():
        model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, pip_requirements=["scikit-learn"]
        )


def _usage(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    rc = run(["keys", "usage", *args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_key_usage_finds_what_a_revoked_key_signed(
    registry: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    _register(registry, monkeypatch, "old", "fraud-old")
    mlflow.MlflowClient().set_registered_model_alias("fraud-old", "production", "1")
    _register(registry, monkeypatch, "ci", "fraud-new")
    old_id = keys.key_id(keys.load_public_key(registry["pubs"]["old"]))

    # by policy name, by key id and by public key file: the same single version
    for ref in ("old", old_id, str(registry["pubs"]["old"])):
        rc, out = _usage(capsys, ref)
        assert rc == 0, out
        (v,) = out["versions"]
        assert (v["name"], v["version"], v["signer"], v["key_id"]) == (
            "fraud-old",
            "1",
            "old",
            old_id,
        )
        assert (v["status"], v["protected"]) == ("trusted", ["alias:production"])
    assert out["checked"] == 2, out
    assert out["without_signer_tag"] == 0

    # no key: nothing untrusted while both keys are trusted
    rc, out = _usage(capsys)
    assert (rc, out["versions"], out["ok"]) == (0, [], True)

    # the key is revoked (a compromise): its version still holds production -> exit 1
    _policy(registry["policy"], registry["pubs"], ["old"])
    rc, out = _usage(capsys)
    assert rc == 1
    (v,) = out["versions"]
    assert (v["name"], v["status"], v["protected"]) == (
        "fraud-old",
        "revoked",
        ["alias:production"],
    )
    assert "is revoked" in v["reason"]
    assert out["untrusted_holding_protected"] == 1

    assert run(["keys", "usage"]) == 1
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("fraud-old"))
    assert row.split() == ["fraud-old", "1", "old", old_id[:16], "revoked", "-", "alias:production"]
    assert "1 version(s) hold a protected target with an untrusted signer: fraud-old v1" in text
    assert "fraud-new" not in text

    # a key removed from the policy altogether is "unknown"
    _policy(registry["policy"], {"ci": registry["pubs"]["ci"]}, [])
    rc, out = _usage(capsys)
    assert rc == 1
    assert [v["status"] for v in out["versions"]] == ["unknown"]


def test_key_usage_refuses_an_unknown_reference(
    registry: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["keys", "usage", "no-such-key"]) == 2
    err = capsys.readouterr().err
    assert "'no-such-key' is not a key id, a key name in the policy or a public key file" in err
