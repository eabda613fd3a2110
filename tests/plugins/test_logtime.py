"""Log-time hook: plain ``mlflow.sklearn.log_model`` produces a signed model with provenance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlflow_guard.core import oms, provenance
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.plugins import logtime
from tests.conftest import KeyRing
from tests.plugins.conftest import Workspace, git, log_sklearn

pytestmark = pytest.mark.slow


def _trust(ws: Workspace) -> TrustStore:
    return TrustStore.single(ws.model_key.key.public_key(), [Purpose.MODEL])


def _model_tags(model_uri: str) -> dict[str, str]:
    import mlflow

    return dict(mlflow.MlflowClient().get_logged_model(model_uri.split("/")[-1]).tags)


def test_logged_model_is_signed_with_provenance(in_workspace: Workspace) -> None:
    import mlflow

    run_id, uri, art = log_sklearn()
    assert (art / "model.sig").is_file()
    result = oms.verify_model(art, _trust(in_workspace))
    assert result.key.key_id == in_workspace.model_key.key_id
    tags = _model_tags(uri)
    assert tags[logtime.STATUS_TAG] == f"signed by {in_workspace.model_key.key_id[:16]}"
    assert tags["guard.model.root_sha256"] == result.root_digest

    _, _, manifest = oms.parse_bundle((art / "model.sig").read_bytes())
    subject = provenance.subject_digest(manifest.resources)
    att = provenance.read(
        (art / provenance.PROVENANCE_FILE).read_bytes(),
        expected_root=subject,
        trust=_trust(in_workspace),
    )
    assert att.signed_by is not None
    ext = att.predicate["buildDefinition"]["externalParameters"]
    assert ext["commit"] == git(in_workspace.repo, "rev-parse", "HEAD")
    assert ext["dirty"] is False
    assert ext["repository"] == "https://example.com/org/repo.git"
    (ds,) = att.dependencies("dataset")
    assert (
        ds["annotations"]["file_sha256"]
        == hashlib.sha256(in_workspace.dataset.read_bytes()).hexdigest()
    )
    assert ds["annotations"]["signed"] is True
    (env,) = att.dependencies("environment")
    assert "mlflow-guard==0.1.0" in env["annotations"]["distributions"]
    assert att.predicate["runDetails"]["metadata"]["invocationId"] == run_id

    lineage = mlflow.artifacts.load_dict(f"runs:/{run_id}/guard/lineage.json")
    assert lineage["environment"]["sha256"] == env["digest"]["sha256"]
    assert lineage["git"]["commit"] == ext["commit"]


def test_signature_verifies_with_openssf_model_signing(in_workspace: Workspace) -> None:
    from model_signing import verifying

    _, _, art = log_sklearn()
    verifying.Config().use_elliptic_key_verifier(public_key=in_workspace.model_key.public).verify(
        art, art / "model.sig"
    )
    (art / "MLmodel").write_text((art / "MLmodel").read_text() + "\n# tampered\n")
    with pytest.raises(ValueError):
        verifying.Config().use_elliptic_key_verifier(
            public_key=in_workspace.model_key.public
        ).verify(art, art / "model.sig")


def test_without_key_the_model_is_unsigned_and_says_how_to_fix(
    in_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_GUARD_SIGNING_KEY")
    _, uri, art = log_sklearn()
    assert not (art / "model.sig").exists()
    assert _model_tags(uri)[logtime.STATUS_TAG] == logtime.NO_KEY
    doc = json.loads((art / provenance.PROVENANCE_FILE).read_bytes())
    assert doc["predicateType"] == provenance.PREDICATE_TYPE


@pytest.mark.parametrize("case", ["missing key file", "wrong passphrase"])
def test_bad_key_never_fails_the_run(
    case: str,
    in_workspace: Workspace,
    keyring: KeyRing,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import mlflow

    if case == "missing key file":
        monkeypatch.setenv("MLFLOW_GUARD_SIGNING_KEY", str(in_workspace.repo / "nope.key"))
        expect = "cannot read private key"
    else:
        locked = keyring.get("locked-model", passphrase="right")
        monkeypatch.setenv("MLFLOW_GUARD_SIGNING_KEY", str(locked.private))
        monkeypatch.setenv("MLFLOW_GUARD_SIGNING_KEY_PASSPHRASE", "wrong")
        expect = "wrong passphrase"
    run_id, uri, art = log_sklearn()
    assert mlflow.get_run(run_id).info.status == "FINISHED"
    assert not (art / "model.sig").exists()
    status = _model_tags(uri)[logtime.STATUS_TAG]
    assert status.startswith("error:")
    assert expect in status
    assert any(expect in r.getMessage() for r in caplog.records)


def test_log_time_hook_can_be_disabled(
    in_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_GUARD_LOG_TIME", "off")
    _, _, art = log_sklearn()
    assert not (art / "model.sig").exists()
    assert not (art / provenance.PROVENANCE_FILE).exists()


def test_user_folders_are_never_written(in_workspace: Workspace, tmp_path: Path) -> None:
    """mlflow.log_artifacts of a user's folder holding an MLmodel is left alone."""
    import mlflow

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    with mlflow.start_run():
        mlflow.log_artifacts(str(folder), "copy")
    assert sorted(p.name for p in folder.iterdir()) == ["MLmodel"]
