"""Start and stop a real guard server (``mlflow-guard server``) on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ADMIN_PASSWORD = "admin-Passw0rd-123"
PASSWORDS = {"alice": "alice-Passw0rd-1", "bob": "bob-Passw0rd-1", "mallory": "mallory-Passw0rd-1"}

POLICY = """\
version: 1
roles: {{data-scientist: [alice], reviewer: [bob], platform: [admin]}}
access:
  - {{role: data-scientist, allow: [read, log, register], experiments: "alice-*",
     models: "fraud-*"}}
  - {{role: reviewer, allow: [read], experiments: "*", models: "*"}}
  - {{role: platform, allow: [read, log, register, approve, promote, admin], experiments: "*",
     models: "*"}}
registry: {{require_signature: false, scan_model_files: false}}
storage: {{database_uri: "{guard_db}"}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    root: Path
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def start_guard(
    root: Path,
    *,
    backend_uri: str | None = None,
    guard_db: str | None = None,
    users_db: str | None = None,
    workers: int = 2,
    extra_env: dict[str, str] | None = None,
    policy_text: str | None = None,
    wait: bool = True,
    artifacts: str | None = None,
    server_opts: tuple[str, ...] = (),
) -> Server:
    """Start ``mlflow-guard server``; with ``wait``, until ``/health`` answers."""
    root.mkdir(parents=True, exist_ok=True)
    policy = root / "guard.yaml"
    policy.write_text(
        policy_text or POLICY.format(guard_db=guard_db or f"sqlite:///{root}/guard.db")
    )
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_GUARD_USERS_DATABASE_URI": users_db or f"sqlite:///{root}/users.db",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key",
        **(extra_env or {}),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    log = root / f"server-{port}.log"
    if "MLFLOW_GUARD_DATABASE_URI" not in env and guard_db:
        env["MLFLOW_GUARD_DATABASE_URI"] = guard_db
    cmd = [
        sys.executable,
        "-m",
        "mlflow_guard.cli",
        "server",
        "--policy",
        str(policy),
        "--backend-store-uri",
        backend_uri or f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination",
        artifacts or str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *server_opts,
    ]
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(f"http://127.0.0.1:{port}", proc, root, log)
    if wait:
        wait_ready(server)
    return server


def wait_ready(server: Server) -> None:
    """Wait until the server's ``/health`` answers (stop it and raise on failure)."""
    proc, log = server.proc, server.log
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"guard server exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{server.url}/health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"guard server did not start:\n{log.read_text()[-4000:]}")
