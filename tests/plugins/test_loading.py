"""Verified loading: nothing is deserialized unless signature, trust and scan all pass."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from mlflow_guard.core import oms
from mlflow_guard.core.errors import KeyNotTrusted, ManifestMismatch, PolicyError, SignatureInvalid
from mlflow_guard.loading import UnsafeModelContent
from tests.conftest import KeyRing
from tests.plugins.conftest import Workspace, evil_pickle, log_sklearn

pytestmark = pytest.mark.slow


def _pickle_file(art: Path) -> Path:
    return next(p for p in (art / "model.pkl", art / "model.skops") if p.exists())


def test_signed_model_loads_and_predicts(in_workspace: Workspace) -> None:
    import mlflow_guard
    from mlflow_guard.lineage import recorded

    _, uri, _ = log_sklearn()
    model = mlflow_guard.load_model(uri)
    assert list(model.predict([[0.0], [3.0]])) == [0, 1]
    sk = mlflow_guard.load_model(uri, flavor="sklearn")
    assert sk.__class__.__name__ == "LogisticRegression"
    (ref,) = recorded()
    assert ref.uri == uri
    assert ref.signer_key_id == in_workspace.model_key.key_id


def test_exploit_is_real_without_guard(in_workspace: Workspace, tmp_path: Path) -> None:
    """Control: the crafted pickle does run code when MLflow loads it unguarded."""
    import mlflow.sklearn

    _, _, art = log_sklearn()
    copy = tmp_path / "copy"
    shutil.copytree(art, copy)
    marker = tmp_path / "pwned"
    _pickle_file(copy).write_bytes(evil_pickle(marker))
    with contextlib.suppress(Exception):  # not a model; the damage is already done
        mlflow.sklearn.load_model(str(copy))
    assert marker.exists()


def test_tampered_model_refused_before_unpickling(in_workspace: Workspace, tmp_path: Path) -> None:
    import mlflow_guard

    _, uri, art = log_sklearn()
    marker = tmp_path / "pwned"
    target = _pickle_file(art)
    target.write_bytes(evil_pickle(marker))
    with pytest.raises(ManifestMismatch) as e:
        mlflow_guard.load_model(uri)
    assert e.value.changed == [target.name]
    assert not marker.exists()


def test_signed_but_malicious_model_refused_by_scanner(
    in_workspace: Workspace, tmp_path: Path
) -> None:
    import mlflow_guard

    _, uri, art = log_sklearn()
    marker = tmp_path / "pwned"
    _pickle_file(art).write_bytes(evil_pickle(marker))
    oms.sign_model(art, in_workspace.model_key.signer)
    with pytest.raises(UnsafeModelContent) as e:
        mlflow_guard.load_model(uri)
    assert any("open" in d for d in e.value.details), e.value.details
    assert not marker.exists()


def test_unsigned_untrusted_and_no_policy(
    in_workspace: Workspace, keyring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow_guard

    _, uri, art = log_sklearn()
    sig = art / "model.sig"
    good = sig.read_bytes()
    sig.unlink()
    with pytest.raises(SignatureInvalid, match="not signed"):
        mlflow_guard.load_model(uri)
    oms.sign_model(art, keyring.get("stranger").signer)
    with pytest.raises(KeyNotTrusted, match="not in the trust store"):
        mlflow_guard.load_model(uri)
    sig.write_bytes(good)
    monkeypatch.delenv("MLFLOW_GUARD_POLICY")
    monkeypatch.chdir(art)
    with pytest.raises(PolicyError, match="cannot verify models without a policy"):
        mlflow_guard.load_model(uri)


def test_opt_in_makes_plain_mlflow_loading_verify(in_workspace: Workspace, tmp_path: Path) -> None:
    import mlflow.pyfunc

    import mlflow_guard
    from mlflow_guard.loading import disable_verified_loading

    _, uri, art = log_sklearn()
    original = mlflow.pyfunc.load_model
    mlflow_guard.enable_verified_loading()
    try:
        assert list(mlflow.pyfunc.load_model(uri).predict([[3.0]])) == [1]
        marker = tmp_path / "pwned"
        _pickle_file(art).write_bytes(evil_pickle(marker))
        with pytest.raises(ManifestMismatch):
            mlflow.pyfunc.load_model(uri)
        assert not marker.exists()
    finally:
        disable_verified_loading()
    assert mlflow.pyfunc.load_model is original


def test_base_model_provenance_after_fine_tune(in_workspace: Workspace) -> None:
    import json

    import mlflow_guard
    from mlflow_guard.core import provenance

    _, base_uri, _ = log_sklearn()
    ref = mlflow_guard.base_model(base_uri)
    _, _, art = log_sklearn()
    doc = json.loads((art / provenance.PROVENANCE_FILE).read_bytes())
    import base64

    st = json.loads(base64.b64decode(doc["payload"]))
    deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
    (base,) = [d for d in deps if d["annotations"]["kind"] == "base_model"]
    assert base["digest"]["sha256"] == ref.root_digest
    assert base["annotations"]["signer_key_id"] == in_workspace.model_key.key_id


def test_unverified_paths_are_not_in_the_loaded_copy(in_workspace: Workspace) -> None:
    """Paths a signature leaves unverified (its ignore_paths, ``.git*`` by default) may be
    changed by anyone with write access to the store: they are deleted from the private copy
    before anything loads from it; the verified files and ``model.sig`` stay."""
    from mlflow_guard import loading

    _, uri, art = log_sklearn()
    oms.sign_model(art, in_workspace.model_key.signer, ignore_paths=["notes"])
    (art / "notes").mkdir()
    (art / "notes" / "extra.pkl").write_bytes(b"added after signing")
    (art / ".gitignore").write_text("*\n")  # ignored by default at signing time
    verified = loading.download_and_verify(uri)
    local = verified.local_path
    assert not (local / "notes").exists()
    assert not (local / ".gitignore").exists()
    assert (local / oms.SIGNATURE_FILE).is_file()
    assert (local / "MLmodel").is_file()
    assert oms.verify_model(local, loading.trust_store()).root_digest == verified.root_digest
