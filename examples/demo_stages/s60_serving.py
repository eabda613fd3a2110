"""Stage 6: serve the signed demo model behind the serving guard and check a signed answer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

from demo_stages._ctx import Context, DemoFailure, guard, run_cli

TITLE = "Serving: verified start, token auth, signed predictions (RFC 9421), 401 without a token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(ctx: Context) -> None:
    """Start ``mlflow-guard serve`` on the demo model; call it with and without a token."""
    import requests

    from mlflow_guard.core import keys
    from mlflow_guard.core.errors import SignatureInvalid
    from mlflow_guard.serving import verify_response

    model_dir, policy = ctx.state["model_dir"], ctx.state["policy"]
    root = policy.parent  # the policy's sqlite:///guard.db is relative to this folder
    key_path, pub_path = keys.write_keypair(ctx.root / "serving-keys", "responses", keys.generate())
    pub = keys.load_public_key(pub_path)
    print(f"response-signing key: {key_path} (public half {pub_path} goes to the clients)")
    cmd = guard("tokens", "create", "alice", "--policy", str(policy), "--json")
    print(f"$ {' '.join(cmd)}   (secret kept out of this log)")
    created = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if created.returncode != 0:
        raise DemoFailure(f"tokens create failed: {created.stderr}")
    token = json.loads(created.stdout)["secret"]
    print(f"  token {json.loads(created.stdout)['token_id']} for alice")
    verified = run_cli(guard("verify", str(model_dir), "--policy", str(policy), "--json"), expect=0)
    root_digest = json.loads(verified.stdout)["root_digest"]

    port = _free_port()
    cmd = guard("serve", str(model_dir), "--policy", str(policy), "--port", str(port))
    cmd += ["--signing-key", str(key_path), "--budget", "1000", "--rate", "50/s"]
    print(f"$ {' '.join(cmd)}")
    log = (ctx.root / "serve.log").open("wb")
    server = subprocess.Popen(
        cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )

    def stop() -> None:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(20)
        log.close()

    ctx.cleanups.append(stop)
    url = f"http://127.0.0.1:{port}"
    http = requests.Session()
    http.trust_env = False
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            raise DemoFailure(f"serve did not start:\n{(ctx.root / 'serve.log').read_text()}")
        try:
            if http.get(url + "/ping", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.3)
    print(f"  server up on {url} (model verified and scanned before loading)")

    from sklearn.datasets import load_breast_cancer

    rows = load_breast_cancer().data[:3].tolist()
    r = http.post(
        url + "/invocations",
        json={"inputs": rows},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    if r.status_code != 200:
        raise DemoFailure(f"prediction with a token failed: {r.status_code} {r.text}")
    print(f"  POST /invocations with a token → 200 {r.text}")
    print(f"  Signature-Input: {r.headers['Signature-Input']}")
    v = verify_response(r, pub, expected_model_digest=root_digest)
    print(f"  signature verified: key {v.key_id[:16]}…, model sha256:{v.model_root_digest[:16]}…")

    r._content = r.content.replace(b"0", b"1", 1)
    try:
        verify_response(r, pub)
    except SignatureInvalid as e:
        print(f"  tampered body → refused: {e.summary}")
    else:
        raise DemoFailure("a tampered response body verified")

    anon = http.post(url + "/invocations", json={"inputs": rows}, timeout=30)
    if anon.status_code != 401:
        raise DemoFailure(f"expected 401 without a token, got {anon.status_code}")
    print(f"  POST /invocations without a token → 401 {anon.text}")
    stop()
