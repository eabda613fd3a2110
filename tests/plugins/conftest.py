"""Fixtures for the client-plugin tests: a real git+DVC repo with a signed dataset, a policy,
one SQLite tracking database per session, and a helper to run code in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import KeyPair, KeyRing

PY = sys.executable
BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a command, fail the test with its output if it fails."""
    full_env = {**os.environ, **env}
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=full_env, check=False)
    assert p.returncode == 0, f"{cmd} failed:\n{p.stdout}\n{p.stderr}"
    return p


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` and return its stdout."""
    return run(["git", *args], repo).stdout.strip()


@dataclass(frozen=True)
class Workspace:
    """A git+DVC repository with a signed dataset, plus the policy and keys that trust it."""

    repo: Path
    dataset: Path
    policy: Path
    model_key: KeyPair
    dataset_key: KeyPair


def write_policy(path: Path, ring: KeyRing, registry: dict[str, object] | None = None) -> Path:
    """A policy trusting the session's model and dataset keys."""
    doc = {
        "version": 1,
        "keys": [
            {"id": "ci", "public_key": str(ring["model"].public), "purposes": ["model"]},
            {"id": "data", "public_key": str(ring["dataset"].public), "purposes": ["dataset"]},
        ],
        "datasets": {"signers": ["data"]},
        "registry": registry or {"require_signature": True, "scan_model_files": True},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Workspace:
    """git init, dvc init, dvc add a CSV, dvc-guard sign it, commit. Shared by the session."""
    repo = tmp_path_factory.mktemp("ws") / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    git(repo, "remote", "add", "origin", "https://alice:s3cret@example.com/org/repo.git")
    run([str(BIN / "dvc"), "init", "-q"], repo)
    (repo / "data").mkdir()
    dataset = repo / "data" / "train.csv"
    dataset.write_text("x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(200)))
    run([str(BIN / "dvc"), "add", "-q", "data/train.csv"], repo)
    run(
        [str(BIN / "dvc-guard"), "sign", "--key", str(keyring["dataset"].private)],
        repo,
    )
    (repo / ".gitignore").write_text("mlruns/\n*.db\nguard.yaml\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "data")
    policy = write_policy(repo / "guard.yaml", keyring)
    return Workspace(repo, dataset, policy, keyring["model"], keyring["dataset"])


@pytest.fixture(scope="session")
def tracking_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file for the session (MLflow's migrations take seconds)."""
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.fixture
def in_workspace(
    workspace: Workspace, tracking_db: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    """cwd = the repo; policy and signing key configured; SQLite tracking and registry."""
    import mlflow

    from mlflow_guard.lineage import base_models

    monkeypatch.chdir(workspace.repo)
    monkeypatch.setenv("MLFLOW_GUARD_POLICY", str(workspace.policy))
    monkeypatch.setenv("MLFLOW_GUARD_SIGNING_KEY", str(workspace.model_key.private))
    monkeypatch.delenv("MLFLOW_GUARD_SIGNING_KEY_PASSPHRASE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tracking_db}")
    mlflow.set_tracking_uri(f"sqlite:///{tracking_db}")
    mlflow.set_registry_uri(f"sqlite:///{tracking_db}")
    base_models.clear()
    yield workspace
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.tracking.fluent._active_experiment_id = None  # no experiment id leaks across stores
    base_models.clear()
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=workspace.repo, check=False)
    subprocess.run(["git", "clean", "-qfd", "-e", "mlruns"], cwd=workspace.repo, check=False)


def fresh_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter (the one running the tests)."""
    return subprocess.run(
        [PY, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
        timeout=300,
    )


MARKER_ENV = "GUARD_TEST_MARKER"


class Evil:
    """Unpickling this creates the file named by its argument (proof of code execution)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def evil_pickle(marker: Path) -> bytes:
    """A pickle whose loading creates ``marker``."""
    import pickle

    return pickle.dumps(Evil(str(marker)))


def log_sklearn(
    registered_model_name: str | None = None, serialization_format: str = "cloudpickle"
) -> tuple[str, str, Path]:
    """Log a small LogisticRegression in a run; return (run_id, model_uri, artifact dir)."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    with mlflow.start_run() as run:
        model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=registered_model_name,
            pip_requirements=["scikit-learn"],
            serialization_format=serialization_format,
        )
    return run.info.run_id, info.model_uri, artifact_dir(info.model_id)


def artifact_dir(model_id: str) -> Path:
    """Local artifact folder of a logged model (file-based artifact store)."""
    import mlflow

    loc = mlflow.MlflowClient().get_logged_model(model_id).artifact_location
    return Path(loc.removeprefix("file://"))


def use_embedded_registry(
    monkeypatch: pytest.MonkeyPatch,
    policy: Path,
    db: Path,
    *,
    signing_key: Path | None = None,
    approvals: Path | None = None,
) -> str:
    """Point MLflow (environment and process-global URIs) at a ``guard+sqlite`` store on ``db``
    governed by ``policy``, from ``policy``'s folder; models are signed at log time with
    ``signing_key`` when given; lineage capture is off. Returns the store URI."""
    import mlflow

    from mlflow_guard.lineage import base_models

    monkeypatch.chdir(policy.parent)
    monkeypatch.setenv("MLFLOW_GUARD_POLICY", str(policy))
    if signing_key is not None:
        monkeypatch.setenv("MLFLOW_GUARD_SIGNING_KEY", str(signing_key))
    monkeypatch.delenv("MLFLOW_GUARD_SIGNING_KEY_PASSPHRASE", raising=False)
    monkeypatch.setenv("MLFLOW_GUARD_LINEAGE", "off")
    if approvals is not None:
        monkeypatch.setenv("MLFLOW_GUARD_APPROVALS_DIR", str(approvals))
    uri = f"guard+sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    base_models.clear()
    return uri
