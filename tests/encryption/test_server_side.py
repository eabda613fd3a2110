"""Server-side encryption: the guard server proxies artifacts into a ``guard+file`` store.

The store holds only ciphertext; the server (which holds the KEK) decrypts only for callers the
guard authorizes; clients use plain MLflow with no plugin configuration.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests

from mlflow_guard.encryption import envelope
from mlflow_guard.encryption.kek import ENV_KEK, LocalKeysetKEK
from tests.server._server import ADMIN_PASSWORD, PASSWORDS, Server, start_guard

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def enc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("enc-server")
    kek = root / "kek.json"
    LocalKeysetKEK.generate(kek)
    store = root / "ciphertext-store"
    server = start_guard(
        root, artifacts=f"guard+file://{store}", extra_env={ENV_KEK: str(kek)}, workers=1
    )
    try:
        for user in ("alice", "mallory"):
            r = requests.post(
                f"{server.url}/api/2.0/mlflow-guard/users/create",
                json={"username": user, "password": PASSWORDS[user]},
                auth=("admin", ADMIN_PASSWORD),
                timeout=30,
            )
            assert r.status_code == 200, r.text
        yield server, store
    finally:
        server.stop()


def _client(server: Server, user: str, monkeypatch: pytest.MonkeyPatch) -> mlflow.MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS[user])
    monkeypatch.delenv(ENV_KEK, raising=False)  # the client holds no key at all
    return mlflow.MlflowClient(server.url)


def test_proxied_store_holds_ciphertext_and_authorized_reader_gets_plaintext(
    enc_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server, store = enc_server
    client = _client(server, "alice", monkeypatch)
    exp = client.create_experiment("alice-enc")
    run = client.create_run(exp)
    src = tmp_path / "weights.bin"
    secret = b"model-weights-" * 10_000
    src.write_bytes(secret)
    client.log_artifact(run.info.run_id, str(src), "model")
    stored = [p for p in store.rglob("*") if p.is_file()]
    assert [p.name for p in stored] == ["weights.bin"]
    assert envelope.is_encrypted(stored[0])
    assert secret[:64] not in stored[0].read_bytes()
    out = client.download_artifacts(run.info.run_id, "model/weights.bin", str(tmp_path / "dl"))
    assert Path(out).read_bytes() == secret

    # A user without read access to the experiment gets 403 and no bytes, on the raw route too.
    path = f"{exp}/{run.info.run_id}/artifacts/model/weights.bin"
    url = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{path}"
    r = requests.get(url, auth=("mallory", PASSWORDS["mallory"]), timeout=30)
    assert r.status_code == 403
    assert secret[:64] not in r.content
    r = requests.get(url, timeout=30)
    assert r.status_code == 401
    r = requests.get(url, auth=("alice", PASSWORDS["alice"]), timeout=30)
    assert r.status_code == 200
    assert r.content == secret
