"""Benchmark the registry gates: registration and promotion of a large model on a guard server.

Both gates are dominated by the server re-hashing the version's artifacts itself (registration:
signature check + every file rehashed + model-file scan; promotion: every file rehashed and
compared with the digest recorded at registration). Baseline: hashing the same bytes
in-process (sha256 of every file, ``hashlib.file_digest``), page cache warm for both.

The model (one ``weights.npy`` of ``--mb`` MB of random data plus ``MLmodel``) is written into
the server's local artifact store at the run's artifact location (upload time is not a gate)
and signed with a model key. Each round registers a new version, records two reviewers'
approvals (not timed), then times ``set_registered_model_alias`` to the protected alias.

Target: registration and promotion each within 1.2x of the in-process hashing time.
Run: ``.venv/bin/python benchmarks/bench_registry.py [--mb 500] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import _common  # noqa: E402

from mlflow_guard.core import oms  # noqa: E402
from tests.registry.conftest import (  # noqa: E402
    Env,
    auth,
    create_users,
    start_registry_server,
    write_keys,
)

API = "/api/2.0/mlflow-guard/promotions"


def write_model(d: Path, mb: int) -> int:
    """A valid .npy of ``mb`` MB of random float32 values, plus an MLmodel file."""
    d.mkdir(parents=True)
    (d / "MLmodel").write_text("flavors: {}\n")
    n = mb * 1024 * 1024 // 4
    with open(d / "weights.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (n,)}
        )
        left = n * 4
        while left:
            chunk = min(left, 16 << 20)
            f.write(os.urandom(chunk))
            left -= chunk
    return sum(p.stat().st_size for p in d.iterdir())


def hash_in_process(d: Path) -> None:
    for p in sorted(d.iterdir()):
        with open(p, "rb") as f:
            hashlib.file_digest(f, "sha256")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import mlflow

    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        root = Path(tmp)
        signers = write_keys(root)
        server = start_registry_server(root)
        try:
            create_users(server.url)
            env = Env(server, root, signers)
            os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = auth(
                "alice"
            )
            client = mlflow.MlflowClient(env.url, env.url)
            exp = client.create_experiment("bench-registry")
            run = client.create_run(exp)
            client.log_metric(run.info.run_id, "accuracy", 0.95)
            rel = run.info.artifact_uri.removeprefix("mlflow-artifacts:").lstrip("/")
            model = root / "artifacts" / rel / "model"
            nbytes = write_model(model, args.mb)
            oms.sign_model(model, signers["ci"])
            client.create_registered_model("bench-model")
            source = f"{run.info.artifact_uri}/model"
            hash_in_process(model)  # warm the page cache
            base, reg, prom = [], [], []
            for _ in range(args.rounds):
                base.append(_common.timed(lambda: hash_in_process(model)))
                t0 = time.perf_counter()
                mv = client.create_model_version("bench-model", source, run_id=run.info.run_id)
                reg.append(time.perf_counter() - t0)
                body = {"name": "bench-model", "version": mv.version, "target": "production"}
                for who in ("bob", "carol"):
                    r = requests.post(
                        f"{env.url}{API}/approve", json=body, auth=auth(who), timeout=600
                    )
                    r.raise_for_status()
                prom.append(
                    _common.timed(
                        lambda v=mv.version: client.set_registered_model_alias(
                            "bench-model", "production", v
                        )
                    )
                )
        finally:
            server.stop()
    b = _common.median(base)

    def row(label: str, xs: list[float]) -> list[str]:
        m = _common.median(xs)
        return [label, f"{m:.2f}", _common.spread(xs), _common.rate(nbytes, m), f"{m / b:.2f}x"]

    rows = [
        row("hash in-process (baseline)", base),
        row("registration (create_model_version)", reg),
        row("promotion (set_registered_model_alias)", prom),
    ]
    print(f"Registry gates, {nbytes / 1e6:.0f} MB model, {args.rounds} rounds (median seconds)\n")
    print(_common.table(["operation", "median s", "min–max", "throughput", "vs hashing"], rows))
    print(f"\n{_common.machine_note(shared=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
