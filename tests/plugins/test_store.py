"""The ``guard+sqlite`` scheme: resolves after ``import mlflow``; runs the registration gate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlflow_guard.core import oms, provenance
from mlflow_guard.loading import trust_store
from tests.conftest import KeyRing
from tests.plugins.conftest import Workspace, fresh_python, log_sklearn, write_policy

pytestmark = pytest.mark.slow
LINEAGE = ["attestation", "git_clean", "datasets_signed", "environment"]


def test_scheme_resolves_in_fresh_interpreter(tracking_db: Path, tmp_path: Path) -> None:
    code = f"""
import mlflow
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as R
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as T
from mlflow.tracking._model_registry.utils import _get_store as registry
from mlflow.tracking._tracking_service.utils import _get_store as tracking
uri = "guard+sqlite:///{tracking_db}"
t, r = tracking(uri), registry(uri)
print(type(t).__name__, isinstance(t, T), type(r).__name__, isinstance(r, R), t.artifact_root_uri)
"""
    p = fresh_python(code, tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Failure attempting to register" not in p.stderr
    name_t, is_t, name_r, is_r, root = p.stdout.split()
    assert (name_t, is_t, name_r, is_r) == (
        "GuardTrackingStore",
        "True",
        "GuardRegistryStore",
        "True",
    )
    assert root.endswith("mlruns")


@pytest.fixture
def guarded(
    in_workspace: Workspace, tracking_db: Path, keyring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> Workspace:
    """Tracking and registry through ``guard+sqlite``; policy requires signature and lineage."""
    import mlflow

    policy = write_policy(
        in_workspace.repo / "guard-strict.yaml",
        keyring,
        {"require_signature": True, "scan_model_files": True, "require_lineage": LINEAGE},
    )
    (in_workspace.repo / ".git" / "info" / "exclude").write_text("guard-strict.yaml\n")
    monkeypatch.setenv("MLFLOW_GUARD_POLICY", str(policy))
    uri = f"guard+sqlite:///{tracking_db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return in_workspace


def _versions(name: str) -> list[str]:
    import mlflow

    return [v.version for v in mlflow.MlflowClient().search_model_versions(f"name='{name}'")]


def test_signed_model_registers_with_guard_tags(guarded: Workspace) -> None:
    import mlflow

    _, _uri, art = log_sklearn("fraud-ok")
    (mv,) = mlflow.MlflowClient().search_model_versions("name='fraud-ok'")
    want = oms.verify_model(art, trust_store())
    assert mv.tags["mlflow_guard.signer"] == "ci"
    assert mv.tags["mlflow_guard.root_sha256"] == want.root_digest
    assert mv.tags["mlflow_guard.scan"] == "clean"
    assert len(mv.tags["mlflow_guard.lineage_sha256"]) == 64


def test_unsigned_model_denied_with_how_to_configure_a_key(
    guarded: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException

    monkeypatch.delenv("MLFLOW_GUARD_SIGNING_KEY")
    with pytest.raises(MlflowException) as e:
        log_sklearn("fraud-unsigned")
    msg = str(e.value)
    assert "model is unsigned" in msg
    assert "MLFLOW_GUARD_SIGNING_KEY" in msg
    assert "lineage: cannot check the provenance" in msg
    assert _versions("fraud-unsigned") == []


def test_dirty_tree_denied_by_git_clean(guarded: Workspace) -> None:
    from mlflow.exceptions import MlflowException

    (guarded.repo / "train.py").write_text("print('uncommitted')\n")
    with pytest.raises(MlflowException, match="git_clean: the run started from a working tree"):
        log_sklearn("fraud-dirty")
    assert _versions("fraud-dirty") == []


@pytest.mark.parametrize("case", ["corrupt", "other model"])
def test_bad_attestation_denied(guarded: Workspace, case: str) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    _, _uri_a, art_a = log_sklearn()
    _, uri_b, art_b = log_sklearn()
    prov = art_b / provenance.PROVENANCE_FILE
    if case == "corrupt":
        prov.write_bytes(prov.read_bytes()[:-40])
        expect = "not valid JSON"
    else:
        prov.write_bytes((art_a / provenance.PROVENANCE_FILE).read_bytes())
        expect = "attestation for another model"
    oms.sign_model(art_b, guarded.model_key.signer)  # a valid model signature over it
    with pytest.raises(MlflowException, match=expect):
        mlflow.register_model(uri_b, f"fraud-{case.replace(' ', '-')}")
    assert _versions(f"fraud-{case.replace(' ', '-')}") == []


def test_guard_tags_are_not_writable_by_callers(guarded: Workspace) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    log_sklearn("fraud-tags")
    client = mlflow.MlflowClient()
    with pytest.raises(MlflowException, match="written by guard"):
        client.set_model_version_tag("fraud-tags", "1", "mlflow_guard.signer", "me")
    with mlflow.start_run() as run, pytest.raises(MlflowException, match="written by guard"):
        mlflow.set_tag("mlflow_guard.user", "admin")
    with pytest.raises(MlflowException, match="written by guard"):
        client.set_registered_model_tag("fraud-tags", "mlflow_guard.approved", "yes")
    with pytest.raises(MlflowException, match="written by guard"):
        client.create_run("0", tags={"mlflow_guard.user": "admin"})
    tags = client.get_model_version("fraud-tags", "1").tags
    assert tags["mlflow_guard.signer"] == "ci"
    assert "mlflow_guard.user" not in client.get_run(run.info.run_id).data.tags
    assert json.loads(json.dumps(tags))


def test_copy_model_version_is_verified_again(guarded: Workspace) -> None:
    """``copy_model_version`` in embedded mode: the guard tags the copy repeats from its source
    are re-derived by the gate; a forged one is refused; a tampered source is not copied."""
    import mlflow
    from mlflow.entities.model_registry import ModelVersionTag
    from mlflow.exceptions import MlflowException

    _, _, art = log_sklearn("fraud-copy-src")
    client = mlflow.MlflowClient()
    src = client.get_model_version("fraud-copy-src", "1")
    copy = client.copy_model_version("models:/fraud-copy-src/1", "fraud-copy-dst")
    got = client.get_model_version("fraud-copy-dst", copy.version)
    assert got.tags["mlflow_guard.root_sha256"] == src.tags["mlflow_guard.root_sha256"]
    assert got.tags["mlflow_guard.signer"] == "ci"

    store = mlflow.tracking._model_registry.utils._get_store()
    forged = [ModelVersionTag(k, v) for k, v in src.tags.items() if k != "mlflow_guard.signer"]
    forged.append(ModelVersionTag("mlflow_guard.signer", "someone-else"))
    with pytest.raises(MlflowException, match="written by guard"):
        store.create_model_version("fraud-copy-dst", "models:/fraud-copy-src/1", tags=forged)

    (art / "model.pkl").write_bytes((art / "model.pkl").read_bytes() + b"\0")
    with pytest.raises(MlflowException) as e:
        client.copy_model_version("models:/fraud-copy-src/1", "fraud-copy-dst")
    message = e.value.message
    assert "registration of a version of 'fraud-copy-dst' denied" in message
    assert "re-sign after an intended change" in message
    assert _versions("fraud-copy-dst") == [copy.version]


def test_registry_calls_load_the_policy_only_when_it_changes(
    guarded: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded store keeps the policy until its file (or a key file) changes: registry
    calls no longer parse it several times each, and an edit still applies at the next call."""
    import mlflow

    from mlflow_guard.core import policy as policy_module
    from mlflow_guard.server import policy_watch

    log_sklearn("fraud-cached")
    client = mlflow.MlflowClient()
    loads: list[object] = []
    real = policy_module.load_policy

    def counting(*args: object, **kw: object) -> object:
        loads.append(args)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(policy_module, "load_policy", counting)
    monkeypatch.setattr(policy_watch, "load_policy", counting)
    client.set_registered_model_alias("fraud-cached", "candidate", "1")
    client.set_model_version_tag("fraud-cached", "1", "note", "x")
    client.delete_registered_model_alias("fraud-cached", "candidate")
    assert loads == []

    path = os.environ["MLFLOW_GUARD_POLICY"]
    with open(path, "a") as f:
        f.write("\n# edited\n")
    client.set_registered_model_alias("fraud-cached", "candidate", "1")
    assert len(loads) == 1
