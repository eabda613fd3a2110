"""Benchmark the guard server against plain MLflow and MLflow's basic-auth app.

Three servers with the same backend (SQLite + local proxied artifacts, each in its own folder),
the same worker count (2) and job execution off: ``mlflow server``, ``mlflow server --app-name
basic-auth`` (with its credential cache on, ``auth_cache_ttl_seconds = 60``: without it every
request pays 2-6 scrypt checks and the run would take hours) and ``mlflow-guard server``. The
caller is a non-admin user with write access. The workload mixes log_batch (10 metrics),
get_run, search_runs and 1 MB artifact upload and download; it runs in interleaved rounds
(servers in a different order each round), once over one keep-alive connection and once with
a new connection per request. Guard writes an audit entry for every request.

Target: guard p50 ≤ 1.10× plain MLflow and no slower than basic-auth.
Run: ``.venv/bin/python benchmarks/bench_server.py [--requests 2000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

USER, PW = "alice", "alice-Bench-Passw0rd"
ADMIN_PW = "admin-Bench-Passw0rd"
MB = b"\x5a" * (1024 * 1024)
MIX = [
    ("log_batch", 40),
    ("get_run", 25),
    ("search_runs", 20),
    ("upload_1mb", 8),
    ("download_1mb", 7),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Srv:
    def __init__(self, name: str, root: Path) -> None:
        self.name, self.root = name, root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True)
        env = {
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "bench-secret",
        }
        common = [
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "2",
        ]
        if name == "plain":
            cmd = [sys.executable, "-m", "mlflow", "server", *common]
        elif name == "basic-auth":
            ini = root / "basic_auth.ini"
            ini.write_text(
                "[mlflow]\ndefault_permission = READ\n"
                f"database_uri = sqlite:///{root}/users.db\nadmin_username = admin\n"
                f"admin_password = {ADMIN_PW}\nauth_cache_ttl_seconds = 60\n"
            )
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
            cmd = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", *common]
        else:
            (root / "guard.yaml").write_text(
                "version: 1\nroles: {ds: [alice]}\n"
                'access:\n  - {role: ds, allow: [read, log], experiments: "*"}\n'
                f'storage: {{database_uri: "sqlite:///{root}/guard.db"}}\n'
            )
            env.update(
                MLFLOW_AUTH_ADMIN_USERNAME="admin",
                MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PW,
                MLFLOW_GUARD_USERS_DATABASE_URI=f"sqlite:///{root}/users.db",
            )
            cmd = [
                sys.executable,
                "-m",
                "mlflow_guard.cli",
                "server",
                "--policy",
                str(root / "guard.yaml"),
                *common,
            ]
        self.log = (root / "server.log").open("wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait(self) -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.root / 'server.log'}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not start")

    def setup(self) -> None:
        admin = ("admin", ADMIN_PW)
        if self.name == "basic-auth":
            r = requests.post(
                f"{self.url}/api/2.0/mlflow/users/create",
                json={"username": USER, "password": PW},
                auth=admin,
                timeout=60,
            )
            r.raise_for_status()
        elif self.name == "guard":
            r = requests.post(
                f"{self.url}/api/2.0/mlflow-guard/users/create",
                json={"username": USER, "password": PW},
                auth=admin,
                timeout=60,
            )
            r.raise_for_status()
        s = requests.Session()
        s.auth = (USER, PW)
        self.exp = s.post(
            f"{self.url}/api/2.0/mlflow/experiments/create", json={"name": "bench"}, timeout=60
        ).json()["experiment_id"]
        self.run = s.post(
            f"{self.url}/api/2.0/mlflow/runs/create", json={"experiment_id": self.exp}, timeout=60
        ).json()["run"]["info"]["run_id"]
        path = f"{self.exp}/{self.run}/artifacts/blob.bin"
        self.art = f"{self.url}/api/2.0/mlflow-artifacts/artifacts/{path}"
        s.put(self.art, data=MB, timeout=60).raise_for_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def one(srv: Srv, s: requests.Session, op: str, i: int, close: bool) -> float:
    hdr = {"Connection": "close"} if close else {}
    u = srv.url
    t = time.perf_counter()
    if op == "log_batch":
        ms = [{"key": f"m{k}", "value": float(i), "timestamp": i, "step": i} for k in range(10)]
        r = s.post(
            f"{u}/api/2.0/mlflow/runs/log-batch",
            json={"run_id": srv.run, "metrics": ms},
            headers=hdr,
            timeout=60,
        )
    elif op == "get_run":
        r = s.get(
            f"{u}/api/2.0/mlflow/runs/get", params={"run_id": srv.run}, headers=hdr, timeout=60
        )
    elif op == "search_runs":
        r = s.post(
            f"{u}/api/2.0/mlflow/runs/search",
            json={"experiment_ids": [srv.exp], "max_results": 10},
            headers=hdr,
            timeout=60,
        )
    elif op == "upload_1mb":
        r = s.put(srv.art.replace("blob.bin", f"up{i % 5}.bin"), data=MB, headers=hdr, timeout=60)
    else:
        r = s.get(srv.art, headers=hdr, timeout=60)
        _ = r.content
    dt = time.perf_counter() - t
    if r.status_code != 200:
        raise RuntimeError(f"{srv.name} {op}: HTTP {r.status_code} {r.text[:200]}")
    return dt


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=2000, help="requests per server (both modes)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-server-"))
    names = ["plain", "basic-auth", "guard"]
    servers: list[Srv] = []
    try:
        for n in names:  # start one at a time: starts are CPU-heavy on a small machine
            srv = Srv(n, root / n)
            servers.append(srv)
            srv.wait()
            srv.setup()
        ops = [op for op, w in MIX for _ in range(w)]
        per_batch = max(1, args.requests // (2 * args.rounds))
        lat: dict[tuple[str, str], list[float]] = defaultdict(list)
        wall: dict[tuple[str, str], float] = defaultdict(float)
        rng = random.Random(7)
        for rnd in range(args.rounds):
            order = servers[:]
            rng.shuffle(order)
            for srv in order:
                for mode in ("keep-alive", "new connection"):
                    s = requests.Session()
                    s.auth = (USER, PW)
                    batch = [rng.choice(ops) for _ in range(per_batch)]
                    t0 = time.perf_counter()
                    for i, op in enumerate(batch):
                        lat[(srv.name, mode)].append(
                            one(srv, s, op, rnd * 10_000 + i, mode != "keep-alive")
                        )
                    wall[(srv.name, mode)] += time.perf_counter() - t0
                    s.close()
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
        rows: list[list[Any]] = []
        for mode in ("keep-alive", "new connection"):
            base = pct(lat[("plain", mode)], 0.5)
            ba = pct(lat[("basic-auth", mode)], 0.5)
            for n in names:
                xs = lat[(n, mode)]
                p50, p99 = pct(xs, 0.5), pct(xs, 0.99)
                rows.append(
                    [
                        mode,
                        n,
                        len(xs),
                        f"{p50 * 1000:.1f}",
                        f"{p99 * 1000:.1f}",
                        f"{len(xs) / wall[(n, mode)]:.1f}",
                        f"{p50 / base:.2f}x",
                        f"{(p50 - base) * 1000:+.1f}",
                        f"{p50 / ba:.2f}x",
                    ]
                )
        print("\n### Guard server vs plain MLflow vs basic-auth (same workload, interleaved)\n")
        print(
            _common.table(
                [
                    "connections",
                    "server",
                    "requests",
                    "p50 ms",
                    "p99 ms",
                    "req/s",
                    "p50 vs plain",
                    "p50 added ms",
                    "p50 vs basic-auth",
                ],
                rows,
            )
        )
        print(
            f"\nWorkload: {', '.join(f'{op} {w}%' for op, w in MIX)}; 2 workers each; "
            f"{args.rounds} interleaved rounds; user is a non-admin with write access; "
            "basic-auth with auth_cache_ttl_seconds=60; guard audits every request."
        )
        print(_common.machine_note(shared=True))
    finally:
        for srv in servers:
            srv.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
