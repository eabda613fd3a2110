"""Against a real ``mlflow server`` over HTTP: signed at log time, verified at load time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_guard.core import oms
from mlflow_guard.core.errors import ManifestMismatch
from mlflow_guard.loading import trust_store
from tests.plugins.conftest import Workspace, evil_pickle

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A plain MLflow server (its own SQLite file, proxied artifacts), once per module."""
    root = tmp_path_factory.mktemp("server")
    port = _free_port()
    artifacts = root / "artifacts"
    log = (root / "server.log").open("w")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(artifacts),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(root / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url, artifacts
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def over_http(
    in_workspace: Workspace, server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> tuple[Workspace, Path]:
    import mlflow

    url, artifacts = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    return in_workspace, artifacts


def _server_copy(artifacts: Path, model_id: str) -> Path:
    (found,) = [p for p in artifacts.rglob("model.sig") if model_id in str(p)]
    return found.parent


def test_signed_over_http_and_verified_on_load(
    over_http: tuple[Workspace, Path], tmp_path: Path
) -> None:
    import mlflow

    import mlflow_guard

    _, artifacts = over_http
    with mlflow.start_run():
        from sklearn.linear_model import LogisticRegression

        info = mlflow.sklearn.log_model(
            LogisticRegression().fit([[0.0], [3.0]], [0, 1]),
            name="model",
            registered_model_name="fraud-http",
            pip_requirements=["scikit-learn"],
            serialization_format="cloudpickle",
        )
    stored = _server_copy(artifacts, info.model_id)
    assert oms.verify_model(stored, trust_store()).key.name == "ci"
    model = mlflow_guard.load_model("models:/fraud-http/1")
    assert list(model.predict([[3.0]])) == [1]

    marker = tmp_path / "pwned"
    (stored / "model.pkl").write_bytes(evil_pickle(marker))
    with pytest.raises(ManifestMismatch) as e:
        mlflow_guard.load_model("models:/fraud-http/1")
    assert e.value.changed == ["model.pkl"]
    assert not marker.exists()
