"""Benchmark: ``mlflow-guard serve`` vs plain ``mlflow models serve`` on the same model.

The same signed scikit-learn model (iris logistic regression, labels out) is served three ways
on 127.0.0.1, each one uvicorn process:

- ``mlflow models serve`` (baseline, no auth, no signing);
- ``mlflow-guard serve --unsigned-responses`` (token auth against the SQLite guard DB,
  budget accounting, no response signature);
- ``mlflow-guard serve --signing-key`` (the default: every response signed, ECDSA P-256,
  RFC 9421 over RFC 9530 digests).

One client posts a one-row JSON ``/invocations`` request, sequentially, in two modes: a
keep-alive session and a new connection per request. Rounds are interleaved (baseline,
unsigned, signed, baseline, ...) so machine noise hits all three alike. Reported: p50 and p90
latency, sequential requests/s, added milliseconds and the ratio to the baseline p50.

Run: ``.venv/bin/python benchmarks/bench_serving.py [--n 300] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import _common

ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(root: Path) -> tuple[Path, Path, Path, str]:
    """Model (signed), policy, response key and a token."""
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlflow_guard.core import keys, oms
    from mlflow_guard.store import GuardStore

    x, y = load_iris(return_X_y=True)
    model_dir = root / "model"
    mlflow.sklearn.save_model(LogisticRegression(max_iter=500).fit(x, y), str(model_dir))
    ci = keys.generate()
    keys.write_keypair(root, "ci", ci, None)
    resp_key, _ = keys.write_keypair(root, "resp", keys.generate(), None)
    oms.sign_model(model_dir, keys.Signer(ci))
    db = f"sqlite:///{root}/guard.db"
    policy = root / "guard.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "keys": [{"id": "ci", "public_key": str(root / "ci.pub"), "purposes": ["model"]}],
                "storage": {"database_uri": db},
            }
        )
    )
    store = GuardStore(db)
    store.migrate()
    _, token = store.create_token("bench", None)
    store.dispose()
    return model_dir, policy, resp_key, token


def start(cmd: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": "60",
        "PATH": f"{_common.BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # uvicorn for mlflow
    }
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited:\n{log.read_text()}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{cmd} did not start:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def measure(url: str, token: str | None, n: int, keep_alive: bool) -> list[float]:
    """Latencies (seconds) of ``n`` sequential predictions."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    lat: list[float] = []
    session = requests.Session()
    session.trust_env = False
    for _ in range(n):
        if not keep_alive:
            session.close()
            session = requests.Session()
            session.trust_env = False
        t0 = time.perf_counter()
        r = session.post(url + "/invocations", json=ROW, headers=headers, timeout=30)
        lat.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code} {r.text}")
    session.close()
    return lat


def pct(xs: list[float], p: float) -> float:
    return statistics.quantiles(xs, n=100)[int(p) - 1] if len(xs) > 1 else xs[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300, help="requests per round and server")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    model_dir, policy, resp_key, token = prepare(root)
    guard = [sys.executable, "-m", "mlflow_guard.cli", "serve", str(model_dir)]
    guard += ["--policy", str(policy), "--budget", "100000000"]
    ports = {name: free_port() for name in ("plain", "unsigned", "signed")}
    cmds = {
        "plain": [
            str(_common.BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "-p",
            str(ports["plain"]),
        ],
        "unsigned": [*guard, "--port", str(ports["unsigned"]), "--unsigned-responses"],
        "signed": [*guard, "--port", str(ports["signed"]), "--signing-key", str(resp_key)],
    }
    procs = {}
    try:
        for name, cmd in cmds.items():
            procs[name] = start(cmd, ports[name], root / f"{name}.log")
        tokens = {"plain": None, "unsigned": token, "signed": token}
        lat: dict[tuple[str, bool], list[float]] = {}
        for mode in (True, False):
            for name in cmds:  # warm-up
                measure(f"http://127.0.0.1:{ports[name]}", tokens[name], 30, mode)
            for _ in range(a.rounds):
                for name in cmds:
                    xs = measure(f"http://127.0.0.1:{ports[name]}", tokens[name], a.n, mode)
                    lat.setdefault((name, mode), []).extend(xs)
    finally:
        for p in procs.values():
            stop(p)
    labels = {
        "plain": "`mlflow models serve` (baseline)",
        "unsigned": "guard: token auth + budget, unsigned",
        "signed": "guard: token auth + budget + signed response",
    }
    rows = []
    for mode in (True, False):
        base = statistics.median(lat[("plain", mode)])
        for name in cmds:
            xs = lat[(name, mode)]
            p50 = statistics.median(xs)
            rows.append(
                [
                    "keep-alive" if mode else "new connection",
                    labels[name],
                    f"{p50 * 1000:.2f}",
                    f"{pct(xs, 90) * 1000:.2f}",
                    f"{len(xs) / sum(xs):.0f}",
                    f"{(p50 - base) * 1000:+.2f}",
                    f"{p50 / base:.2f}×",
                ]
            )
    print(
        _common.table(
            [
                "client",
                "server",
                "p50 ms",
                "p90 ms",
                "req/s (1 client)",
                "added p50 ms",
                "p50 ratio",
            ],
            rows,
        )
    )
    print(
        f"\n{a.rounds} interleaved rounds × {a.n} one-row requests per server and mode. "
        + _common.machine_note(shared=True)
    )


if __name__ == "__main__":
    main()
