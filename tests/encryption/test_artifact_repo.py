"""The ``guard+file`` artifact repository with the real MLflow client: ciphertext at rest."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from sklearn.linear_model import LogisticRegression

from mlflow_guard.core import keys, oms
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.encryption import envelope
from mlflow_guard.encryption.kek import ENV_KEK, LocalKeysetKEK


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    kek_path = tmp_path / "kek.json"
    LocalKeysetKEK.generate(kek_path)
    monkeypatch.setenv(ENV_KEK, str(kek_path))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    store = tmp_path / "artifacts"
    exp = mlflow.create_experiment("enc", artifact_location=f"guard+file://{store}")
    yield store, exp
    mlflow.set_tracking_uri(None)


def _model() -> LogisticRegression:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


def test_logged_model_is_ciphertext_at_rest_and_loads(tracking: tuple[Path, str]) -> None:
    store, exp = tracking
    model = _model()
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.sklearn.log_model(
            model, name="m", serialization_format="pickle", pip_requirements=["scikit-learn"]
        )
        mlflow.log_text("hello", "notes/readme.txt")
    files = [p for p in store.rglob("*") if p.is_file()]
    assert files, "nothing was written to the artifact store"
    assert all(envelope.is_encrypted(p) for p in files), [
        p for p in files if not envelope.is_encrypted(p)
    ]
    pkl = next(p for p in files if p.name == "model.pkl")
    with pytest.raises((pickle.UnpicklingError, ValueError, EOFError, KeyError, IndexError)):
        pickle.loads(pkl.read_bytes())
    loaded = mlflow.sklearn.load_model(info.model_uri)
    x = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    assert (loaded.predict(x) == model.predict(x)).all()


def test_download_without_kek_is_refused(
    tracking: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, exp = tracking
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_text("secret", "a.txt")
    monkeypatch.delenv(ENV_KEK)
    repo = get_artifact_repository(run.info.artifact_uri)
    for d in ("dl", "a", "b"):
        (tmp_path / d).mkdir(exist_ok=True)
    with pytest.raises(MlflowException, match="MLFLOW_GUARD_KEK_KEYSET is not set"):
        repo.download_artifacts("a.txt", str(tmp_path / "dl"))
    # MLflow's runs:/ resolver hides the reason, but still fails closed.
    with pytest.raises(MlflowException, match="Failed to download"):
        mlflow.artifacts.download_artifacts(
            f"runs:/{run.info.run_id}/a.txt", dst_path=str(tmp_path / "dl")
        )
    assert not (tmp_path / "dl" / "a.txt").exists()


def test_tampered_artifact_is_refused(tracking: tuple[Path, str], tmp_path: Path) -> None:
    store, exp = tracking
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_text("x" * 100_000, "big.txt")
    f = next(store.rglob("big.txt"))
    data = bytearray(f.read_bytes())
    data[-50] ^= 1
    f.write_bytes(bytes(data))
    repo = get_artifact_repository(run.info.artifact_uri)
    for d in ("dl", "a", "b"):
        (tmp_path / d).mkdir(exist_ok=True)
    with pytest.raises(MlflowException, match="failed authentication"):
        repo.download_artifacts("big.txt", str(tmp_path / "dl"))
    assert not (tmp_path / "dl" / "big.txt").exists()


def test_plaintext_object_refused_unless_allowed(
    tracking: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, exp = tracking
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_text("v1", "legacy.txt")
    f = next(store.rglob("legacy.txt"))
    f.write_text("planted plaintext")
    repo = get_artifact_repository(run.info.artifact_uri)
    for d in ("dl", "a", "b"):
        (tmp_path / d).mkdir(exist_ok=True)
    with pytest.raises(MlflowException, match="plaintext where ciphertext"):
        repo.download_artifacts("legacy.txt", str(tmp_path / "a"))
    assert not (tmp_path / "a" / "legacy.txt").exists()
    monkeypatch.setenv("MLFLOW_GUARD_ALLOW_PLAINTEXT_ARTIFACTS", "true")
    out = repo.download_artifacts("legacy.txt", str(tmp_path / "b"))
    assert Path(out).read_text() == "planted plaintext"


def test_signature_covers_plaintext(tracking: tuple[Path, str], tmp_path: Path) -> None:
    """A model signed before upload verifies after download: OMS digests cover plaintext."""
    _, exp = tracking
    local = tmp_path / "model"
    mlflow.sklearn.save_model(_model(), str(local), pip_requirements=["scikit-learn"])
    key = keys.generate()
    signed = oms.sign_model(local, keys.Signer(key))
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_artifacts(str(local), "model")
    dl = mlflow.artifacts.download_artifacts(
        f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path / "dl")
    )
    res = oms.verify_model(dl, TrustStore.single(key.public_key()))
    assert res.root_digest == signed.root_digest


def test_scheme_resolves_in_fresh_interpreter() -> None:
    code = (
        "from mlflow.store.artifact.artifact_repository_registry import "
        "_artifact_repository_registry as r\n"
        "print(sorted(s for s in r._registry if s.startswith('guard+')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "'guard+file'" in out.stdout, out.stderr
    assert "'guard+mlflow-artifacts'" in out.stdout, out.stderr
    assert "Failure attempting to register" not in out.stderr


def test_symlink_in_uploaded_folder_is_refused_not_dropped(
    tracking: tuple[Path, str], tmp_path: Path
) -> None:
    from mlflow_guard.core.errors import UnsafePath

    store, exp = tracking
    src = tmp_path / "folder"
    src.mkdir()
    (src / "a.txt").write_text("a")
    (src / "link").symlink_to("/etc/hostname")
    with mlflow.start_run(experiment_id=exp), pytest.raises(UnsafePath, match="symlink"):
        mlflow.log_artifacts(str(src), "folder")
    assert not list(store.rglob("a.txt"))
