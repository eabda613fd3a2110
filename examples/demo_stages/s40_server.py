"""Stage 4: the guard server — authentication, access control, identity binding, audit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from typing import Any

from demo_stages._ctx import Context, DemoFailure

TITLE = "Guard server: mlflow server --app-name guard (users, allowed and refused actions)"
ADMIN_PW = "demo-Admin-Passw0rd"
USERS = {"alice": "demo-Alice-Passw0rd", "bob": "demo-Bob-Passw0rd"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _show(what: str, r: Any) -> None:
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    msg = body.get("message", "") if isinstance(body, dict) else ""
    print(f"  {what}: HTTP {r.status_code} {msg}".rstrip())


def run(ctx: Context) -> None:
    """Start a guard server (SQLite, free port), create users, show allowed and refused actions."""
    import requests

    root = ctx.root / "server"
    root.mkdir(parents=True, exist_ok=True)
    policy = root / "guard.yaml"
    policy.write_text(
        textwrap.dedent(f"""\
        version: 1
        roles: {{data-scientist: [alice], reviewer: [bob]}}
        access:
          - {{role: data-scientist, allow: [read, log, register], experiments: "fraud-*",
             models: "fraud-*"}}
          - {{role: reviewer, allow: [read], experiments: "*", models: "*"}}
        registry: {{require_signature: false, scan_model_files: false}}
        storage: {{database_uri: "sqlite:///{root}/guard.db"}}
        """)
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PW,
        "MLFLOW_GUARD_USERS_DATABASE_URI": f"sqlite:///{root}/users.db",
    }
    cmd = [
        sys.executable,
        "-m",
        "mlflow_guard.cli",
        "server",
        "--policy",
        str(policy),
        "--backend-store-uri",
        f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    print(
        f"$ mlflow-guard server --policy {policy.name} --backend-store-uri sqlite:///mlflow.db "
        f"--host 127.0.0.1 --port {port}"
    )
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
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise DemoFailure(f"guard server did not start; see {root / 'server.log'}")
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.5)
    print(f"  guard server listening on {url}")
    ctx.state["guard_server"] = {"url": url, "admin": ("admin", ADMIN_PW), "users": USERS}

    admin = ("admin", ADMIN_PW)
    for user, pw in USERS.items():
        r = requests.post(
            f"{url}/api/2.0/mlflow-guard/users/create",
            json={"username": user, "password": pw},
            auth=admin,
            timeout=30,
        )
        _show(f"admin creates user {user}", r)
        if r.status_code != 200:
            raise DemoFailure(f"creating {user} failed: {r.text}")

    r = requests.get(f"{url}/api/2.0/mlflow/experiments/search?max_results=5", timeout=30)
    _show("anonymous searches experiments", r)
    if r.status_code != 401:
        raise DemoFailure("an anonymous request was not refused with 401")

    import mlflow

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = (
        "alice",
        USERS["alice"],
    )
    try:
        client = mlflow.MlflowClient(url)
        exp = client.create_experiment("fraud-detection")
        run = client.create_run(exp, tags={"mlflow.user": "someone-else"})
        client.log_metric(run.info.run_id, "accuracy", 0.93)
        tags = client.get_run(run.info.run_id).data.tags
        print(
            f"  alice logs a run in 'fraud-detection': allowed; server-bound tags "
            f"mlflow_guard.user={tags['mlflow_guard.user']}, mlflow.user={tags['mlflow.user']}"
        )
        if tags["mlflow_guard.user"] != "alice" or tags["mlflow.user"] != "alice":
            raise DemoFailure("the server did not bind the run to the authenticated user")
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
        os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)

    bob = ("bob", USERS["bob"])
    r = requests.post(
        f"{url}/api/2.0/mlflow/runs/log-metric",
        auth=bob,
        timeout=30,
        json={
            "run_id": run.info.run_id,
            "key": "accuracy",
            "value": 0.99,
            "timestamp": 0,
            "step": 1,
        },
    )
    _show("bob (reviewer) tries to overwrite alice's metric", r)
    if r.status_code != 403:
        raise DemoFailure("a reviewer could write to a run")
    r = requests.post(
        f"{url}/api/2.0/mlflow/runs/set-tag",
        auth=("alice", USERS["alice"]),
        timeout=30,
        json={"run_id": run.info.run_id, "key": "mlflow_guard.user", "value": "bob"},
    )
    _show("alice tries to rewrite the server-bound identity tag", r)
    if r.status_code != 403:
        raise DemoFailure("a client could write a mlflow_guard.* tag")
    r = requests.get(f"{url}/api/2.0/mlflow-guard/status", auth=admin, timeout=30)
    print(
        f"  audit log head: entry {r.json()['audit']['seq']} "
        f"(every allow and deny above is recorded)"
    )
