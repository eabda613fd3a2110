"""Benchmark: model signing and verification, mlflow-guard vs the OpenSSF ``model_signing``.

Generates a synthetic model directory (default 2 GB: four equal ``*.safetensors`` shards holding
85% of the bytes, plus many 64-576 KiB files), warms the page cache, and measures in one run,
interleaved over ``--reps`` rounds (median reported):

- the hashing limit: single-thread ``hashlib.sha256`` over the same bytes in memory, times the
  usable CPUs;
- in-process hashing with :func:`mlflow_guard.core.hashing.hash_entries` (sha256 files, sha256
  shards, blake3), as a share of that limit (wall clock, and CPU-time efficiency, which other
  jobs on a shared machine disturb less);
- end to end, start-up included: ``mlflow-guard sign|verify`` (sha256, blake3, sha256 shards),
  ``model_signing sign key|verify key`` (its CLI: sha256 files only) and the ``model_signing``
  Python API on the same files.

Prints markdown tables with ratios and whether each target of issue 2 is met. The directory is
deleted afterwards (unless ``--keep``).

Usage: ``python benchmarks/bench_signing.py [--size 2] [--reps 3] [--dir /tmp]``
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

from mlflow_guard.core import hashing, keys

GUARD = str(c.BIN / "mlflow-guard")
MS = str(c.BIN / "model_signing")
SHARD = 128 * 1024 * 1024


def hashing_limit(model: Path) -> tuple[float, float]:
    """Single-thread in-memory sha256 over the model's bytes: (wall, CPU) bytes per second."""
    secs = cpu = 0.0
    total = 0
    for f in hashing.list_files(model):
        data = f.path.read_bytes()
        c0, t0 = time.thread_time(), time.perf_counter()
        hashlib.sha256(data).digest()
        secs += time.perf_counter() - t0
        cpu += time.thread_time() - c0
        total += len(data)
    return total / secs, total / max(cpu, 1e-9)


def in_process(model: Path, ser: hashing.Serialization) -> tuple[float, float]:
    """(wall, cpu) seconds of listing + hashing in this process."""
    cpu = time.process_time()
    start = time.perf_counter()
    hashing.hash_entries(hashing.list_files(model), ser)
    return time.perf_counter() - start, time.process_time() - cpu


def ms_api_sign(model: Path, sig: Path, priv: Path) -> None:
    """model_signing Python API, key signer, default (sha256 files) hashing."""
    from model_signing import hashing as ms_hashing
    from model_signing import signing

    cfg = ms_hashing.Config().use_file_serialization()
    signing.Config().use_elliptic_key_signer(private_key=priv).set_hashing_config(cfg).sign(
        model, sig
    )


def ms_api_verify(model: Path, sig: Path, pub: Path) -> None:
    """model_signing Python API verification."""
    from model_signing import verifying

    verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(model, sig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=float, default=2.0, help="model size in GB (default 2)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds (median reported)")
    ap.add_argument("--dir", default=None, help="where to create the temporary model")
    ap.add_argument("--keep", action="store_true", help="keep the generated directory")
    ap.add_argument("--not-shared", action="store_true", help="the machine was idle")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-signing-", dir=args.dir))
    try:
        return _run(tmp, args)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(tmp: Path, args: argparse.Namespace) -> int:
    model, sigs = tmp / "model", tmp / "sigs"
    sigs.mkdir()
    nfiles, total = c.synthetic_model(model, int(args.size * c.GB))
    key = keys.generate(keys.Algorithm.ECDSA_P256)
    priv, pub = tmp / "key.pem", tmp / "key.pub"
    priv.write_bytes(keys.private_pem(key))
    priv.chmod(0o600)
    pub.write_bytes(keys.public_pem(key.public_key()))
    c.warm(model)
    import model_signing.signing
    import model_signing.verifying  # noqa: F401

    cpus = c.usable_cpus()
    g = [GUARD]
    gk = ["--quiet", "--key", str(priv)]
    gp = ["--quiet", "--public-key", str(pub)]

    def sig(name: str) -> str:
        return str(sigs / f"{name}.sig")

    cli: dict[str, tuple[Callable[[], float], Callable[[], float]]] = {
        "mlflow-guard CLI, sha256": (
            lambda: c.run_cmd([*g, "sign", str(model), *gk, "--signature", sig("g256")]),
            lambda: c.run_cmd([*g, "verify", str(model), *gp, "--signature", sig("g256")]),
        ),
        "mlflow-guard CLI, blake3": (
            lambda: c.run_cmd(
                [*g, "sign", str(model), *gk, "--hash", "blake3", "--signature", sig("gb3")]
            ),
            lambda: c.run_cmd([*g, "verify", str(model), *gp, "--signature", sig("gb3")]),
        ),
        "mlflow-guard CLI, sha256 --shards 128 MiB": (
            lambda: c.run_cmd(
                [
                    *g,
                    "sign",
                    str(model),
                    *gk,
                    "--shards",
                    "--shard-size",
                    str(SHARD),
                    "--signature",
                    sig("gsh"),
                ]
            ),
            lambda: c.run_cmd([*g, "verify", str(model), *gp, "--signature", sig("gsh")]),
        ),
        "model_signing CLI (sha256)": (
            lambda: c.run_cmd(
                [
                    MS,
                    "sign",
                    "key",
                    str(model),
                    "--signature",
                    sig("ms"),
                    "--private_key",
                    str(priv),
                ]
            ),
            lambda: c.run_cmd(
                [
                    MS,
                    "verify",
                    "key",
                    str(model),
                    "--signature",
                    sig("ms"),
                    "--public_key",
                    str(pub),
                ]
            ),
        ),
        "model_signing Python API (sha256)": (
            lambda: c.timed(lambda: ms_api_sign(model, Path(sig("msapi")), priv)),
            lambda: c.timed(lambda: ms_api_verify(model, Path(sig("msapi")), pub)),
        ),
    }
    procs = {
        "sha256 files": hashing.Serialization(),
        "sha256 shards 128 MiB": hashing.Serialization(method="shards", shard_size=SHARD),
        "blake3 files": hashing.Serialization(hash_type="blake3"),
    }
    times: dict[tuple[str, str], list[float]] = {}
    cpu_times: dict[str, list[float]] = {}
    limits: list[tuple[float, float]] = []
    startup: dict[str, list[float]] = {}
    for _ in range(args.reps):
        limits.append(hashing_limit(model))
        for name, (sign, verify) in cli.items():
            times.setdefault((name, "sign"), []).append(sign())
            times.setdefault((name, "verify"), []).append(verify())
        for name, ser in procs.items():
            wall, cpu = in_process(model, ser)
            times.setdefault((name, "hash"), []).append(wall)
            cpu_times.setdefault(name, []).append(cpu)
        startup.setdefault("mlflow-guard", []).append(c.run_cmd([GUARD, "verify", "--help"]))
        startup.setdefault("model_signing", []).append(c.run_cmd([MS, "verify", "key", "--help"]))
    limits.append(hashing_limit(model))
    _report(times, cpu_times, limits, startup, nfiles, total, cpus, args)
    # sanity: our sha256 signature verifies with the reference verifier (not timed)
    c.run_cmd(
        [MS, "verify", "key", str(model), "--signature", sig("g256"), "--public_key", str(pub)]
    )
    print("\nCheck: the mlflow-guard sha256 signature verified with `model_signing verify key`.")
    return 0


def _report(
    times: dict[tuple[str, str], list[float]],
    cpu_times: dict[str, list[float]],
    limits: list[tuple[float, float]],
    startup: dict[str, list[float]],
    nfiles: int,
    total: int,
    cpus: int,
    args: argparse.Namespace,
) -> None:
    limit1 = max(w for w, _ in limits)
    limit1_cpu = max(cpu for _, cpu in limits)
    limit = limit1 * cpus
    med = {k: c.median(v) for k, v in times.items()}
    ms_verify = med[("model_signing CLI (sha256)", "verify")]
    ms_sign = med[("model_signing CLI (sha256)", "sign")]
    print(f"## Signing benchmark: {total / c.GB:.2f} GB, {nfiles} files\n")
    print(c.machine_note(shared=not args.not_shared))
    print(
        f"\nHashing limit: single-thread hashlib sha256 in memory {limit1 / c.GB:.2f} GB/s "
        f"(best of {len(limits)}) × {cpus} CPUs = {limit / c.GB:.2f} GB/s. "
        f"Median of {args.reps} interleaved rounds; warm page cache.\n"
    )
    rows = []
    names = sorted({n for n, op in times if op != "hash"}, key=lambda n: n.startswith("model"))
    for name in names:
        s, v = med[(name, "sign")], med[(name, "verify")]
        rows.append(
            [
                name,
                f"{s:.2f} ({c.spread(times[(name, 'sign')])})",
                c.rate(total, s),
                f"{ms_sign / s:.2f}×",
                f"{v:.2f} ({c.spread(times[(name, 'verify')])})",
                c.rate(total, v),
                f"{ms_verify / v:.2f}×",
            ]
        )
    print(
        c.table(
            [
                "end to end",
                "sign s",
                "sign rate",
                "vs ms CLI",
                "verify s",
                "verify rate",
                "vs `model_signing verify key`",
            ],
            rows,
        )
    )
    rows = []
    for name, cpu in cpu_times.items():
        wall = med[(name, "hash")]
        share = total / wall / limit
        cpu_eff = (total / c.median(cpu)) / limit1_cpu
        eff = f"{cpu_eff:.0%}" if name.startswith("sha256") else "n/a (blake3)"
        rows.append([name, f"{wall:.3f}", c.rate(total, wall), f"{share:.0%}", eff])
    print()
    print(
        c.table(
            [
                "in-process hashing (list + hash)",
                "s",
                "rate",
                "of hashing limit (wall)",
                "bytes per CPU-second vs 1-thread hashlib",
            ],
            rows,
        )
    )
    print(
        f"\nStart-up (`verify --help`): mlflow-guard {c.median(startup['mlflow-guard']):.2f} s, "
        f"model_signing {c.median(startup['model_signing']):.2f} s."
    )
    v256 = ms_verify / med[("mlflow-guard CLI, sha256", "verify")]
    vb3 = ms_verify / med[("mlflow-guard CLI, blake3", "verify")]
    vsh = ms_verify / med[("mlflow-guard CLI, sha256 --shards 128 MiB", "verify")]
    inproc = total / med[("sha256 files", "hash")] / limit
    print("\nTargets (issue 2):\n")
    print(
        f"- `mlflow-guard verify` sha256 ≥ 1.5× `model_signing verify key`: {v256:.2f}× "
        f"({'met' if v256 >= 1.5 else 'NOT met'}); with --shards {vsh:.2f}×"
    )
    print(f"- `mlflow-guard verify` blake3 ≥ 3×: {vb3:.2f}× ({'met' if vb3 >= 3 else 'NOT met'})")
    print(
        f"- in-process sha256 ≥ 90% of the hashing limit: {inproc:.0%} "
        f"({'met' if inproc >= 0.9 else 'NOT met'})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
