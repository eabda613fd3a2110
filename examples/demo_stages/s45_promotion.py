"""Stage 4.5: registry gates and promotion approvals on the guard server (issue 4)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import numpy as np

from demo_stages._ctx import Context, DemoFailure, guard, run_cli

TITLE = "Promotion approvals: register signed, fail to promote, approve, promote, tamper"
ADMIN_PW = "demo-Admin-Passw0rd"
USERS = {"alice": "demo-Alice-Passw0rd", "bob": "demo-Bob-Passw0rd", "carol": "demo-Carol-Pw0rd"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(ctx: Context, root: Path) -> str:
    import requests

    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PW,
        "MLFLOW_GUARD_USERS_DATABASE_URI": f"sqlite:///{root}/users.db",
    }
    cmd = guard("server", "--policy", str(root / "guard.yaml"), "--backend-store-uri",
                f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts"),
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1")  # fmt: skip
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )

    def stop() -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()

    ctx.cleanups.append(stop)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise DemoFailure(f"guard server did not start; see {root / 'server.log'}")
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.5)
    for user, pw in USERS.items():
        r = requests.post(f"{url}/api/2.0/mlflow-guard/users/create", auth=("admin", ADMIN_PW),
                          json={"username": user, "password": pw}, timeout=30)  # fmt: skip
        if r.status_code != 200:
            raise DemoFailure(f"creating {user} failed: {r.text}")
    print(f"  guard server on {url} with users {', '.join(USERS)}")
    return url


def _as(url: str, user: str) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": user,
           "MLFLOW_TRACKING_PASSWORD": USERS[user]}  # fmt: skip
    env.pop("MLFLOW_TRACKING_TOKEN", None)
    return env


def run(ctx: Context) -> None:
    """Register a signed model, fail to promote it, approve (one self-approval refused),
    promote, then tamper with the artifacts and watch the next promotion fail."""
    import mlflow
    from mlflow.exceptions import MlflowException

    root = ctx.root / "registry"
    (root / "keys").mkdir(parents=True)
    for name, purpose in (("ci", "model"), ("carol", "approval")):
        run_cli(guard("keys", "generate", "--purpose", purpose, "--out", str(root / "keys"),
                      "--name", name), expect=0)  # fmt: skip
    (root / "guard.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        keys:
          - {{id: ci, public_key: keys/ci.pub, purposes: [model]}}
          - {{id: carol, public_key: keys/carol.pub, purposes: [approval]}}
        roles: {{data-scientist: [alice], reviewer: [alice, bob, carol]}}
        access:
          - {{role: data-scientist, allow: [read, log, register, promote], experiments: "*",
             models: "fraud-*"}}
          - {{role: reviewer, allow: [read, approve], experiments: "*", models: "*"}}
        registry:
          require_signature: true
          scan_model_files: true
          protected:
            - alias: production
              approvals: 2
              approver_roles: [reviewer]
              separation_of_duties: true
              approval_ttl: 7d
              gates: {{metrics: {{accuracy: ">= 0.9"}}}}
        storage: {{database_uri: "sqlite:///{root}/guard.db"}}
        """))  # fmt: skip
    url = _start(ctx, root)

    model = root / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    np.save(model / "weights.npy", np.linspace(0, 1, 1000))
    run_cli(guard("sign", str(model), "--key", str(root / "keys" / "ci.key")), expect=0)
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = (
        "alice", USERS["alice"])  # fmt: skip
    try:
        client = mlflow.MlflowClient(url, url)
        run_ = client.create_run(client.create_experiment("fraud-promotion"))
        client.log_metric(run_.info.run_id, "accuracy", 0.94)
        client.log_artifacts(run_.info.run_id, str(model), "model")
        client.create_registered_model("fraud-model")
        mv = client.create_model_version(
            "fraud-model", f"{run_.info.artifact_uri}/model", run_id=run_.info.run_id
        )
        tags = mv.tags
        print(f"  alice registers fraud-model v{mv.version}: server-written tags signer="
              f"{tags['mlflow_guard.signer']}, scan={tags['mlflow_guard.scan']}, root digest "
              f"{tags['mlflow_guard.root_sha256'][:16]}…")  # fmt: skip
        try:
            client.set_registered_model_alias("fraud-model", "production", mv.version)
            raise DemoFailure("an unapproved version reached the production alias")
        except MlflowException as e:
            print(f"  alice sets alias production: refused — {e.message[:160]}…")
        v = str(mv.version)
        run_cli(guard("promote", "request", "fraud-model", v, "--to", "production"),
                expect=0, env=_as(url, "alice"))  # fmt: skip
        run_cli(guard("promote", "approve", "fraud-model", v, "--to", "production"),
                expect=1, env=_as(url, "alice"))  # fmt: skip
        bob = _as(url, "bob")
        note = "metrics and lineage reviewed"
        run_cli(guard("promote", "approve", "fraud-model", v, "--to", "production",
                      "--comment", note), expect=0, env=bob)  # fmt: skip
        signed = root / "carol-approval.json"
        digest = tags["mlflow_guard.root_sha256"]
        carol_key = str(root / "keys" / "carol.key")
        run_cli(guard("approve", "fraud-model", v, "--to", "production", "--key", carol_key,
                      "--root-digest", digest, "--out", str(signed)), expect=0)  # fmt: skip
        proc = run_cli(guard("promote", "approve", "--file", str(signed)),
                       expect=0, env=_as(url, "alice"))  # fmt: skip
        if "promoted" not in proc.stdout.splitlines():
            raise DemoFailure("two valid approvals did not promote the version")
        held = client.get_registered_model("fraud-model").aliases
        print(f"  production alias now points at version {held.get('production')}")
        if str(held.get("production")) != v:
            raise DemoFailure("the alias did not move")

        weights = next(
            (root / "artifacts").rglob(f"{run_.info.run_id}/artifacts/model/weights.npy")
        )
        weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
        print(f"  an attacker with write access to the artifact store edits {weights.name}")
        try:
            client.set_registered_model_alias("fraud-model", "production", v)
            raise DemoFailure("a tampered version was promoted")
        except MlflowException as e:
            print(f"  re-promotion: refused — {e.message[:200]}…")
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
        os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
