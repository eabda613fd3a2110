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

from mlflow_guard.core import keys, oms
from mlflow_guard.encryption import envelope
from mlflow_guard.encryption.kek import ENV_KEK, LocalKeysetKEK
from tests.server._server import ADMIN_PASSWORD, PASSWORDS, POLICY, Server, start_guard

pytestmark = pytest.mark.slow
MODEL_KEY = keys.generate()


@pytest.fixture(scope="module")
def enc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("enc-server")
    kek = root / "kek.json"
    LocalKeysetKEK.generate(kek)
    store = root / "ciphertext-store"
    keys.write_keypair(root, "ci", MODEL_KEY)
    policy = POLICY.replace(
        "registry: {{require_signature: false, scan_model_files: false}}",
        "keys: [{{id: ci, public_key: ci.pub, purposes: [model]}}]\n"
        "registry: {{require_signature: true, scan_model_files: true}}",
    ).format(guard_db=f"sqlite:///{root}/guard.db")
    assert "require_signature: true" in policy
    server = start_guard(
        root,
        artifacts=f"guard+file://{store}",
        extra_env={ENV_KEK: str(kek)},
        workers=1,
        policy_text=policy,
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
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
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


def test_registration_gate_verifies_the_decrypted_artifacts(
    enc_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The server decrypts to verify: OMS digests cover plaintext, and the gate passes."""
    server, store = enc_server
    client = _client(server, "alice", monkeypatch)
    model = tmp_path / "model"
    model.mkdir()
    (model / "coef.json").write_text("[" + ",".join(["0.5"] * 20_000) + "]")
    (model / "MLmodel").write_text("flavors: {}\n")
    signed = oms.sign_model(model, keys.Signer(MODEL_KEY))
    exp = client.create_experiment("alice-enc-registry")
    run = client.create_run(exp)
    client.log_artifacts(run.info.run_id, str(model), "model")
    assert all(envelope.is_encrypted(p) for p in store.rglob("*") if p.is_file())
    client.create_registered_model("fraud-enc")
    mv = client.create_model_version("fraud-enc", f"{run.info.artifact_uri}/model", run.info.run_id)
    tags = client.get_model_version("fraud-enc", mv.version).tags
    assert tags["mlflow_guard.root_sha256"] == signed.root_digest
    assert tags["mlflow_guard.signer"] == "ci"
    # The same artifacts after tampering with the ciphertext: registration refused.
    stored = next(p for p in store.rglob("coef.json") if run.info.run_id in str(p))
    data = bytearray(stored.read_bytes())
    data[-10] ^= 1
    stored.write_bytes(bytes(data))
    with pytest.raises(
        mlflow.exceptions.MlflowException,
        match=r"could not read the model's artifacts.*failed authentication",
    ):
        client.create_model_version("fraud-enc", f"{run.info.artifact_uri}/model", run.info.run_id)
    assert len(client.search_model_versions("name='fraud-enc'")) == 1
