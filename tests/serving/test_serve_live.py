"""``mlflow-guard serve`` over real HTTPS on 127.0.0.1, and start-up refusals.

One server per session (see ``conftest.py``): TLS from trustme, responses signed with a P-256
key, top-2 probabilities rounded to 2 decimals, a budget of 40 predictions per client.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
from http_message_signatures import HTTPMessageVerifier, MappingKeyResolver, algorithms

from mlflow_guard.cli import run as cli_run
from mlflow_guard.core import keys, oms
from mlflow_guard.core.errors import SignatureInvalid
from mlflow_guard.serving import verify_response
from mlflow_guard.store import GuardStore
from tests.conftest import KeyRing, snapshot
from tests.serving.conftest import BUDGET, ServeProcess, Setup, public_key, start_serve

ROW = [5.1, 3.5, 1.4, 0.2]
pytestmark = pytest.mark.slow


def predict(server: ServeProcess, token: str | None, rows: int = 1) -> requests.Response:
    return server.session(token).post(
        server.url + "/invocations", json={"inputs": [ROW] * rows}, timeout=30
    )


def test_health_open_everything_else_needs_a_token(server: ServeProcess, setup: Setup) -> None:
    anon = server.session(None)
    for path in ("/ping", "/health"):
        r = anon.get(server.url + path, timeout=10)
        assert r.status_code == 200
        verify_response(r, public_key(setup.response_key))
    assert anon.get(server.url + "/version", timeout=10).status_code == 401
    r = predict(server, None)
    assert r.status_code == 401
    assert r.json()["error_code"] == "UNAUTHENTICATED"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "predictions" not in r.json()
    verify_response(r, public_key(setup.response_key))  # denials are signed too
    for bad in ("mlg_0000000000000000_" + "A" * 43, setup.tokens["alice"] + "x", "nonsense"):
        r = predict(server, bad)
        assert r.status_code == 401, bad
        assert "predictions" not in r.json()
    basic = requests.post(
        server.url + "/invocations",
        json={"inputs": [ROW]},
        auth=("alice", setup.tokens["alice"]),
        verify=str(server.ca),
        timeout=10,
    )
    assert basic.status_code == 401


def test_plain_http_refused_on_tls_port(server: ServeProcess) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url.replace("https", "http") + "/ping", timeout=5)


def test_signed_prediction_verifies_and_tampering_fails(server: ServeProcess, setup: Setup) -> None:
    r = predict(server, setup.tokens["alice"])
    assert r.status_code == 200, r.text
    [row] = r.json()["predictions"]
    assert [p["label"] for p in row] == [0, 1]  # top-2, labels from the classifier
    assert all(p["probability"] == round(p["probability"], 2) for p in row)
    digest = oms.verify_model(setup.model_dir, _trust(setup)).root_digest
    v = verify_response(r, public_key(setup.response_key), expected_model_digest=digest)
    assert v.model_root_digest == digest
    assert r.headers["X-Model-Root-Digest"] == f"sha256:{digest}"

    # any RFC 9421 verifier: the package's own, given only the public key
    pub = public_key(setup.response_key)
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ECDSA_P256_SHA256,
        key_resolver=MappingKeyResolver(public_keys={keys.key_id(pub): pub}, private_keys={}),
    )
    [res] = verifier.verify(r, expect_tag="mlflow-guard-serving", body=r.content)
    assert res.body == r.content

    tampered: Any = r
    tampered._content = r.content.replace(b'"label": 0', b'"label": 2')
    assert tampered.content != r.json()
    with pytest.raises(SignatureInvalid, match="Content-Digest"):
        verify_response(tampered, pub)
    with pytest.raises(Exception, match=r"Content-Digest|digest"):
        verifier.verify(tampered, expect_tag="mlflow-guard-serving", body=tampered.content)


def test_budget_exhaustion_is_429_per_client(server: ServeProcess, setup: Setup) -> None:
    bob, carol = setup.tokens["bob"], setup.tokens["carol"]
    assert predict(server, bob, rows=BUDGET - 5).status_code == 200
    big = predict(server, bob, rows=10)  # more rows than are left: refused, nothing spent
    assert big.status_code == 429
    assert big.json()["error_code"] == "QUOTA_EXCEEDED"
    assert "asks for 10" in big.json()["message"]
    assert "predictions" not in big.json()
    assert int(big.headers["Retry-After"]) >= 1
    verify_response(big, public_key(setup.response_key))
    for _ in range(5):
        assert predict(server, bob).status_code == 200
    r = predict(server, bob)
    assert r.status_code == 429
    assert "exhausted" in r.json()["message"]
    assert 1 <= int(r.headers["Retry-After"]) <= 86400
    assert predict(server, carol).status_code == 200  # another client is unaffected
    assert server.session(bob).get(server.url + "/ping", timeout=10).status_code == 200


def test_revoked_token_refused_at_once(server: ServeProcess, setup: Setup) -> None:
    store = GuardStore(setup.database_uri)
    token_id, secret = store.create_token("dave", None)
    assert predict(server, secret).status_code == 200
    assert store.revoke_token(token_id)
    store.dispose()
    assert predict(server, secret).status_code == 401


def _trust(setup: Setup) -> Any:
    from mlflow_guard.core.policy import load_policy
    from mlflow_guard.core.trust import TrustStore

    return TrustStore.from_policy(load_policy(setup.policy))


# -- start-up refusals (in process; the server loop must never be reached) -------------------


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr("mlflow_guard.serving.app.run", lambda *a, **k: calls.append(a))
    return calls


def _serve(model: Path, setup: Setup, *extra: str) -> int:
    return cli_run(
        [
            "serve",
            str(model),
            "--policy",
            str(setup.policy),
            "--signing-key",
            str(setup.response_key.private),
            *extra,
        ]
    )


def test_tampered_model_does_not_start(
    setup: Setup,
    tmp_path: Path,
    no_serving: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = Path(shutil.copytree(setup.model_dir, tmp_path / "m"))
    pkl = next(p for p in model.iterdir() if p.name.startswith("model.") and p.name != "model.sig")
    pkl.write_bytes(pkl.read_bytes() + b"\x00")
    before = snapshot(model)
    assert _serve(model, setup) == 1
    err = capsys.readouterr().err
    assert f"changed: {pkl.name}" in err
    assert no_serving == []
    assert snapshot(model) == before


def test_unsigned_model_does_not_start(
    setup: Setup, tmp_path: Path, no_serving: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    model = Path(shutil.copytree(setup.model_dir, tmp_path / "m"))
    (model / "model.sig").unlink()
    assert _serve(model, setup) == 1
    assert "model.sig" in capsys.readouterr().err
    assert no_serving == []


def test_untrusted_signer_does_not_start(
    setup: Setup,
    tmp_path: Path,
    keyring: KeyRing,
    no_serving: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = Path(shutil.copytree(setup.model_dir, tmp_path / "m"))
    oms.sign_model(model, keyring.get("stranger").signer)
    assert _serve(model, setup) == 1
    assert "trust" in capsys.readouterr().err.lower()
    assert no_serving == []


def test_verified_model_reaches_the_server_loop(setup: Setup, no_serving: list[Any]) -> None:
    assert _serve(setup.model_dir, setup) == 0
    assert len(no_serving) == 1
    auth = no_serving[0][0].auth
    assert (auth._recheck, auth._inline) == (0.0, True)  # exact by default; SQLite inline


def test_token_recheck_reaches_the_auth(setup: Setup, no_serving: list[Any]) -> None:
    assert _serve(setup.model_dir, setup, "--token-recheck", "0.5") == 0
    assert no_serving[0][0].auth._recheck == 0.5


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--host", "0.0.0.0"], "refusing to serve plain HTTP"),
        (["--labels-only", "--top-k", "2"], "not allowed with"),
        (["--rate", "fast"], "--rate"),
        (["--budget", "0"], "--budget"),
        (["--token-recheck", "-1"], "--token-recheck must be between 0 and 60"),
        (["--token-recheck", "61"], "--token-recheck must be between 0 and 60"),
        (["--token-recheck", "nan"], "--token-recheck must be between 0 and 60"),
    ],
)
def test_configuration_errors_exit_2(
    setup: Setup,
    extra: list[str],
    needle: str,
    no_serving: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _serve(setup.model_dir, setup, *extra) == 2
    assert needle in capsys.readouterr().err
    assert no_serving == []


def test_signing_key_required(
    setup: Setup, no_serving: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_run(["serve", str(setup.model_dir), "--policy", str(setup.policy)])
    assert code == 2
    assert "--signing-key" in capsys.readouterr().err
    assert no_serving == []


def test_revoking_the_model_key_stops_serving_without_a_restart(
    setup: Setup, tmp_path: Path
) -> None:
    """A running server stops answering (503, signed, with the reason) once the policy revokes
    the key that signed its model, and answers again when the key is trusted again."""
    import yaml

    policy = tmp_path / "guard.yaml"
    original = yaml.safe_load(setup.policy.read_text())
    policy.write_text(yaml.safe_dump(original))
    proc = start_serve(
        setup.model_dir,
        policy,
        ["--signing-key", str(setup.response_key.private)],
        tmp_path / "serve.log",
    )
    try:
        assert predict(proc, setup.tokens["carol"]).status_code == 200
        policy.write_text(yaml.safe_dump({**original, "revoked": ["ci"]}))
        for path in ("/invocations", "/ping"):
            if path == "/ping":
                r = proc.session(None).get(proc.url + path, timeout=10)
            else:
                r = predict(proc, setup.tokens["carol"])
            assert r.status_code == 503, r.text
            assert r.json()["error_code"] == "MODEL_NOT_TRUSTED"
            assert "no longer trusted" in r.json()["message"]
            assert "revoked" in r.json()["message"]
            assert "predictions" not in r.json()
            verify_response(r, public_key(setup.response_key))
        policy.write_text(yaml.safe_dump(original))
        assert predict(proc, setup.tokens["carol"]).status_code == 200
    finally:
        proc.stop()
