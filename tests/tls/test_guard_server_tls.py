"""`mlflow-guard server --tls-cert/--tls-key`: a real guard server over HTTPS, MLflow client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests
import trustme

from mlflow_guard.cli import main
from tests.server._server import ADMIN_PASSWORD, PASSWORDS, Server, start_guard

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("tls-guard")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(str(root / "server.pem"))
    leaf.private_key_pem.write_to_path(str(root / "server.key"))
    server = start_guard(
        root,
        wait=False,
        workers=1,
        server_opts=("--tls-cert", str(root / "server.pem"), "--tls-key", str(root / "server.key")),
    )
    server.url = server.url.replace("http://", "https://")
    deadline = time.monotonic() + 180
    session = requests.Session()
    session.trust_env = False
    try:
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(server.log.read_text()[-4000:])
            try:
                if session.get(f"{server.url}/health", verify=str(root / "ca.pem"), timeout=2).ok:
                    break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.3)
        r = session.post(
            f"{server.url}/api/2.0/mlflow-guard/users/create",
            json={"username": "alice", "password": PASSWORDS["alice"]},
            auth=("admin", ADMIN_PASSWORD),
            verify=str(root / "ca.pem"),
            timeout=30,
        )
        assert r.status_code == 200, r.text
        yield server, root / "ca.pem"
    finally:
        server.stop()


def test_mlflow_client_with_ca_bundle_works(
    tls_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = tls_server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["alice"])
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(ca))
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    client = mlflow.MlflowClient(server.url)
    exp = client.create_experiment("alice-tls")
    assert client.get_experiment(exp).name == "alice-tls"


def test_untrusted_certificate_is_a_clear_error(
    tls_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = tls_server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["alice"])
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = mlflow.MlflowClient(server.url)
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        client.search_experiments()


def test_plain_http_gets_no_answer(tls_server: tuple[Server, Path]) -> None:
    server, _ = tls_server
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.url.replace("https://", "http://") + "/health", timeout=5)


def test_non_loopback_without_tls_refused_before_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "guard.yaml"
    policy.write_text("version: 1\n")
    rc = main(["server", "--policy", str(policy), "--host", "0.0.0.0", "--dry-run"])
    assert rc == 2
    assert "refusing to serve plain HTTP on non-loopback" in capsys.readouterr().err
    assert not (tmp_path / "guard.db").exists()


def test_mlflow_host_env_is_checked_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "guard.yaml"
    policy.write_text("version: 1\n")
    monkeypatch.setenv("MLFLOW_HOST", "0.0.0.0")
    assert main(["server", "--policy", str(policy), "--dry-run"]) == 2
    assert "refusing to serve plain HTTP on non-loopback address 0.0.0.0" in capsys.readouterr().err
    assert not (tmp_path / "guard.db").exists()
