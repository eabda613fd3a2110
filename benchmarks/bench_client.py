"""Benchmark the MLflow client plugins: lineage at start_run, signing at log_model.

1. ``start_run`` + ``end_run`` in a git+DVC repository with N DVC outputs (default 1,000 ``.dvc``
   files, each with a signed ``dvc-guard`` sidecar), with the guard run context provider on and
   off (``MLFLOW_GUARD_LINEAGE=off``), interleaved. Target: ≤ +150 ms per run.
2. ``mlflow.pyfunc.log_model`` of a model with a 200 MB weights file, with the log-time hook
   signing (``MLFLOW_GUARD_SIGNING_KEY``) and with the hook off (``MLFLOW_GUARD_LOG_TIME=off``),
   interleaved; compared with the time to sha256 the model bytes in-process.
   Target: signing adds ≤ 1.2× the hashing time.

Local SQLite tracking store and file artifact store in a temporary folder (deleted afterwards).
Run: ``.venv/bin/python benchmarks/bench_client.py [--outputs 1000] [--runs 20]
[--size-mb 200] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common


def _sh(cwd: Path, *args: str) -> None:
    subprocess.run(list(args), cwd=cwd, check=True, capture_output=True)


def make_repo(root: Path, outputs: int, signer: object) -> Path:
    """A git repo with ``.dvc/`` and ``outputs`` tracked files, each with a signed sidecar.

    The ``.dvc`` files have DVC's own layout; sidecars are real dataset statements signed with
    :mod:`mlflow_guard.core.dataset` (writing them through ``dvc add`` 1,000 times would take
    minutes and measure DVC, not the plugin).
    """
    from mlflow_guard.core import dataset

    repo = root / "repo"
    (repo / ".dvc").mkdir(parents=True)
    (repo / ".dvc" / "config").write_text("")
    data = repo / "data"
    data.mkdir()
    for i in range(outputs):
        body = f"id,label\n{i},{i % 2}\n".encode()
        name = f"part-{i:05d}.csv"
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        (data / f"{name}.dvc").write_text(
            f"outs:\n- md5: {md5}\n  size: {len(body)}\n  hash: md5\n  path: {name}\n"
        )
        manifest = dataset.DatasetManifest(
            dvc_file=f"data/{name}.dvc",
            outputs=[
                dataset.DatasetOutput(
                    path=f"data/{name}",
                    hash_kind="md5",
                    md5=md5,
                    size=len(body),
                    is_dir=False,
                    files=[
                        dataset.DatasetFile(
                            path="", sha256=hashlib.sha256(body).hexdigest(), size=len(body)
                        )
                    ],
                )
            ],
        )
        env = dataset.sign_manifest(manifest, signer)  # type: ignore[arg-type]
        (data / f"{name}.dvc.sig").write_text(json.dumps(env.to_json()))
    (repo / ".gitignore").write_text("/data/*.csv\n")
    _sh(repo, "git", "init", "-q", "-b", "main")
    _sh(repo, "git", "add", "-A")
    _sh(repo, "git", "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-q", "-m", "data")
    return repo


def _cpu() -> float:
    """CPU seconds of this process (all threads) plus its finished children (git)."""
    import resource

    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime


def bench_runs(repo: Path, runs: int, rounds: int) -> dict[str, list[float]]:
    """ms per start_run+end_run (wall, and CPU as ``cpu-on``/``cpu-off``), interleaved."""
    import mlflow

    os.chdir(repo)
    mlflow.set_experiment("bench-runs")
    with mlflow.start_run():  # warm-up: imports, DB, git module, first snapshot
        pass
    out: dict[str, list[float]] = {"off": [], "on": [], "cpu-off": [], "cpu-on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            os.environ["MLFLOW_GUARD_LINEAGE"] = mode
            for _ in range(runs):
                c, t = _cpu(), time.perf_counter()
                mlflow.start_run()
                mlflow.end_run()
                out[mode].append((time.perf_counter() - t) * 1000)
                out[f"cpu-{mode}"].append((_cpu() - c) * 1000)
    os.environ.pop("MLFLOW_GUARD_LINEAGE", None)
    return out


COLD = """
import os, resource, sys, time
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("bench-runs")
def cpu():
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime
c, t = cpu(), time.perf_counter()
mlflow.start_run()
mlflow.end_run()
print((time.perf_counter() - t) * 1000, (cpu() - c) * 1000)
"""


def bench_cold(repo: Path, tracking_uri: str, rounds: int) -> dict[str, list[float]]:
    """First start_run+end_run in a fresh interpreter (cold caches, GitPython import)."""
    out: dict[str, list[float]] = {"off": [], "on": [], "cpu-off": [], "cpu-on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            proc = subprocess.run(
                [sys.executable, "-c", COLD, tracking_uri],
                cwd=repo,
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "MLFLOW_GUARD_LINEAGE": mode},
            )
            wall, cpu = proc.stdout.strip().splitlines()[-1].split()
            out[mode].append(float(wall))
            out[f"cpu-{mode}"].append(float(cpu))
    return out


class _Weights:
    """A pyfunc model whose only content is a large weights file (an artifact)."""

    @staticmethod
    def model() -> object:
        import mlflow.pyfunc

        class Model(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
            def predict(self, context: object, model_input: object) -> object:
                return model_input

        return Model()


def bench_log_model(weights: Path, rounds: int, key: Path) -> dict[str, list[float]]:
    """Seconds per log_model, signing vs hook off, plus in-process sha256 of the bytes."""
    import mlflow
    import mlflow.pyfunc

    mlflow.set_experiment("bench-log-model")
    out: dict[str, list[float]] = {
        "off": [],
        "signed": [],
        "hash": [],
        "cpu-off": [],
        "cpu-signed": [],
        "cpu-hash": [],
    }
    model = _Weights.model()
    os.environ["MLFLOW_GUARD_LOG_TIME"] = "off"
    with mlflow.start_run():  # warm-up: imports and first-use costs out of the measurement
        mlflow.pyfunc.log_model(name="warm", python_model=model, pip_requirements=["mlflow"])
    for _ in range(rounds):
        for mode in ("off", "signed"):
            if mode == "off":
                os.environ["MLFLOW_GUARD_LOG_TIME"] = "off"
                os.environ.pop("MLFLOW_GUARD_SIGNING_KEY", None)
            else:
                os.environ["MLFLOW_GUARD_LOG_TIME"] = "on"
                os.environ["MLFLOW_GUARD_SIGNING_KEY"] = str(key)
            with mlflow.start_run():
                c, t = _cpu(), time.perf_counter()
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=model,
                    artifacts={"weights": str(weights)},
                    pip_requirements=["mlflow"],
                )
                out[mode].append(time.perf_counter() - t)
                out[f"cpu-{mode}"].append(_cpu() - c)
            art = mlflow.MlflowClient().get_logged_model(info.model_id).artifact_location
            signed = Path(art.removeprefix("file://"), "model.sig").exists()
            if signed != (mode == "signed"):
                raise SystemExit(f"unexpected signing outcome in mode {mode}")
            shutil.rmtree(art.removeprefix("file://"), ignore_errors=True)
        c, t = _cpu(), time.perf_counter()
        h = hashlib.sha256()
        with weights.open("rb", buffering=0) as f:
            while chunk := f.read(4 << 20):
                h.update(chunk)
        out["hash"].append(time.perf_counter() - t)
        out["cpu-hash"].append(_cpu() - c)
    for k in ("MLFLOW_GUARD_LOG_TIME", "MLFLOW_GUARD_SIGNING_KEY"):
        os.environ.pop(k, None)
    return out


def main() -> int:
    """Run both benchmarks and print the markdown table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--outputs", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=20, help="runs per mode per round")
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from mlflow_guard.core import keys

    tmp = Path(tempfile.mkdtemp(prefix="bench-client-"))
    cwd = os.getcwd()
    try:
        key = keys.generate()
        key_path, _ = keys.write_keypair(tmp / "keys", "model", key)
        signer = keys.Signer(key)
        t0 = time.perf_counter()
        repo = make_repo(tmp, args.outputs, signer)
        print(
            f"repo with {args.outputs} DVC outputs built in {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        from mlflow_guard.lineage import snapshot

        snap = snapshot.collect(repo)
        if len(snap.datasets) != args.outputs or not all(d.sha256 for d in snap.datasets):
            raise SystemExit("lineage did not see every signed output")
        runs = bench_runs(repo, args.runs, args.rounds)
        cold = bench_cold(repo, f"sqlite:///{tmp / 'mlflow.db'}", args.rounds)
        os.chdir(tmp)
        weights = tmp / "weights.bin"
        block = os.urandom(1 << 20)
        with weights.open("wb") as f:
            for _ in range(args.size_mb):
                f.write(block)
        logs = bench_log_model(weights, args.rounds, key_path)
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    off, on = med(runs["off"]), med(runs["on"])
    coff, con = med(runs["cpu-off"]), med(runs["cpu-on"])
    added, cadded = on - off, con - coff
    lo, ls, lh = (med(logs[k]) for k in ("off", "signed", "hash"))
    clo, cls, clh = (med(logs[k]) for k in ("cpu-off", "cpu-signed", "cpu-hash"))
    sign_cost, csign = ls - lo, cls - clo
    cold_off, cold_on = med(cold["off"]), med(cold["on"])
    nbytes = args.size_mb << 20

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    rows = [
        [
            f"start_run+end_run, {args.outputs} DVC outputs, plugin off",
            f"{off:.1f} ms",
            f"{coff:.1f} ms",
            "1.00×",
            "baseline",
        ],
        [
            "start_run+end_run, plugin on (lineage tags)",
            f"{on:.1f} ms",
            f"{con:.1f} ms",
            f"{on / off:.2f}×",
            f"+{added:.1f} ms wall, +{cadded:.1f} ms CPU "
            f"(target ≤ +150 ms: {verdict(added <= 150)})",
        ],
        [
            "first start_run in a fresh process, plugin off",
            f"{cold_off:.1f} ms",
            f"{med(cold['cpu-off']):.1f} ms",
            "1.00×",
            "baseline (imports, first DB access)",
        ],
        [
            "first start_run in a fresh process, plugin on",
            f"{cold_on:.1f} ms",
            f"{med(cold['cpu-on']):.1f} ms",
            f"{cold_on / cold_off:.2f}×",
            f"+{cold_on - cold_off:.1f} ms wall, "
            f"+{med(cold['cpu-on']) - med(cold['cpu-off']):.1f} ms CPU (GitPython import, "
            f"DVC files from the on-disk cache; target: {verdict(cold_on - cold_off <= 150)} wall)",
        ],
        [
            f"log_model {args.size_mb} MB, hook off",
            f"{lo:.2f} s",
            f"{clo:.2f} s",
            "1.00×",
            "baseline",
        ],
        [
            f"log_model {args.size_mb} MB, signed + provenance",
            f"{ls:.2f} s",
            f"{cls:.2f} s",
            f"{ls / lo:.2f}×",
            f"+{sign_cost:.2f} s wall, +{csign:.2f} s CPU",
        ],
        [
            f"sha256 of the {args.size_mb} MB in-process",
            f"{lh:.2f} s",
            f"{clh:.2f} s",
            _common.rate(nbytes, lh),
            f"signing adds {sign_cost / lh:.2f}× (wall) / {csign / clh:.2f}× (CPU) the hashing "
            f"time (target ≤ 1.2×: {verdict(sign_cost <= 1.2 * lh)} wall, "
            f"{verdict(csign <= 1.2 * clh)} CPU)",
        ],
    ]
    print(_common.table(["measurement", "median wall", "median CPU", "ratio", "note"], rows))
    print(
        f"\n{args.rounds} interleaved rounds ({args.runs} runs per mode per round); "
        f"{_common.machine_note(shared=True)}."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
