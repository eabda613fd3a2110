"""Benchmark: ``mlflow-guard serve`` vs plain ``mlflow models serve`` on the same model.

The same signed scikit-learn model (iris logistic regression, labels out) is served four ways
on 127.0.0.1, each one uvicorn process (h11, asyncio loop, one worker):

- ``mlflow models serve`` (the baseline of the target: no auth, no signing; MLflow starts
  ``uvicorn mlflow.pyfunc.scoring_server.app:app`` with uvicorn's defaults, so it writes an
  access-log line per request);
- the same MLflow app under uvicorn with the guard's server settings (``--no-access-log
  --log-level warning``): the like-for-like baseline, to show what the server settings
  alone are worth;
- ``mlflow-guard serve --unsigned-responses`` (token auth against the SQLite guard DB,
  budget accounting, no response signature);
- ``mlflow-guard serve --signing-key`` (the default: every response signed, ECDSA P-256,
  RFC 9421 over RFC 9530 digests);
- with ``--postgres URI``, also signed with the tokens in PostgreSQL (a scratch schema), once
  reading the revision for every request and once with ``--token-recheck 1``.

One client posts a one-row JSON ``/invocations`` request, sequentially, in two modes: a
keep-alive session and a new connection per request. Rounds are interleaved (baseline,
quiet baseline, unsigned, signed, baseline, ...) so machine noise hits all alike. Reported:
p50 and p90 latency, sequential requests/s, server CPU time per request (user + system of
the server's process group: less disturbed by other jobs than wall time), added milliseconds
and the ratio to the ``mlflow models serve`` p50.

Run: ``.venv/bin/python benchmarks/bench_serving.py [--n 300] [--rounds 3] [--postgres URI]``.
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


def postgres_store(uri: str) -> tuple[str, str, str]:
    """A scratch schema in ``uri`` with a migrated guard store and a token."""
    import secrets

    import psycopg2

    from mlflow_guard.store import GuardStore

    schema = f"bench_serving_{secrets.token_hex(4)}"
    conn = psycopg2.connect(uri)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    conn.close()
    sep = "&" if "?" in uri else "?"
    scoped = f"{uri}{sep}options=-csearch_path%3D{schema}"
    store = GuardStore(scoped)
    store.migrate()
    _, token = store.create_token("bench", None)
    store.dispose()
    return schema, scoped, token


def drop_schema(uri: str, schema: str) -> None:
    import psycopg2

    conn = psycopg2.connect(uri)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    conn.close()


def start(
    cmd: list[str], port: int, log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **(extra_env or {}),
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


def cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes of process group ``pgid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:  # fields[0] is the state; pgrp is the 5th field overall
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


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
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument(
        "--postgres",
        metavar="URI",
        help="also serve signed with the tokens in this PostgreSQL database (a scratch schema "
        "is created and dropped), e.g. postgresql://postgres@127.0.0.1:5432/test",
    )
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    model_dir, policy, resp_key, token = prepare(root)
    guard = [sys.executable, "-m", "mlflow_guard.cli", "serve", str(model_dir)]
    guard += ["--policy", str(policy), "--budget", "100000000"]
    pg_names = ["signed-pg", "signed-pg-1s"] if a.postgres else []
    names = ["plain", "quiet", "unsigned", "signed", *pg_names]
    ports = {name: free_port() for name in names}
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
        "quiet": [
            str(_common.BIN / "uvicorn"),
            "--host",
            "127.0.0.1",
            "--port",
            str(ports["quiet"]),
            "--no-access-log",
            "--log-level",
            "warning",
            "mlflow.pyfunc.scoring_server.app:app",
        ],
        "unsigned": [*guard, "--port", str(ports["unsigned"]), "--unsigned-responses"],
        "signed": [*guard, "--port", str(ports["signed"]), "--signing-key", str(resp_key)],
    }
    tokens = {"plain": None, "quiet": None, "unsigned": token, "signed": token}
    schema = None
    if a.postgres:
        schema, pg_uri, tokens["signed-pg"] = postgres_store(a.postgres)
        tokens["signed-pg-1s"] = tokens["signed-pg"]
        pg_args = ["--signing-key", str(resp_key), "--database-uri", pg_uri]
        cmds["signed-pg"] = [*guard, "--port", str(ports["signed-pg"]), *pg_args]
        cmds["signed-pg-1s"] = [*guard, "--port", str(ports["signed-pg-1s"]), *pg_args]
        cmds["signed-pg-1s"] += ["--token-recheck", "1"]
    from mlflow.pyfunc import scoring_server

    model_env = scoring_server._SERVER_MODEL_PATH  # what `mlflow models serve` sets
    procs = {}
    load_start = _common.load()
    try:
        for name, cmd in cmds.items():
            env = {model_env: model_dir.as_uri()} if name == "quiet" else None
            procs[name] = start(cmd, ports[name], root / f"{name}.log", env)
        lat: dict[tuple[str, bool], list[float]] = {}
        cpu: dict[tuple[str, bool], float] = {}
        for mode in (True, False):
            for name in cmds:  # warm-up
                measure(f"http://127.0.0.1:{ports[name]}", tokens[name], 30, mode)
            for _ in range(a.rounds):
                for name in cmds:
                    before = cpu_seconds(procs[name].pid)
                    xs = measure(f"http://127.0.0.1:{ports[name]}", tokens[name], a.n, mode)
                    cpu[(name, mode)] = cpu.get((name, mode), 0.0) + (
                        cpu_seconds(procs[name].pid) - before
                    )
                    lat.setdefault((name, mode), []).extend(xs)
    finally:
        for p in procs.values():
            stop(p)
        if schema is not None:
            drop_schema(a.postgres, schema)
    labels = {
        "plain": "`mlflow models serve` (baseline)",
        "quiet": "same MLflow app, guard's uvicorn settings (no access log)",
        "unsigned": "guard: token auth + budget, unsigned",
        "signed": "guard: token auth + budget + signed response",
        "signed-pg": "guard: signed, tokens in PostgreSQL (read per request, worker thread)",
        "signed-pg-1s": "guard: signed, tokens in PostgreSQL, `--token-recheck 1`",
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
                    f"{cpu[(name, mode)] / len(xs) * 1000:.2f}",
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
                "server CPU ms/req",
                "added p50 ms",
                "p50 ratio",
            ],
            rows,
        )
    )
    print(
        f"\n{a.rounds} interleaved rounds × {a.n} one-row requests per server and mode; "
        f"load average {load_start:.1f} at the start. " + _common.machine_note(shared=True)
    )


if __name__ == "__main__":
    main()
