"""Benchmark: dvc-guard verify (cold and warm) against `dvc status` and the sha256 limit.

Builds a git + DVC repository with ``--files`` files totalling ``--size`` bytes in one
DVC-tracked directory (``dvc add``), signs it with ``dvc-guard sign``, then times, each as the
median of ``--rounds`` runs of the real command line (interpreter start-up included):

- ``dvc status`` (DVC's own check: its inode/mtime/size state cache, no hashing);
- ``dvc-guard verify --no-cache`` (cold: every byte rehashed with sha256, as pre-push does);
- ``dvc-guard verify --cache`` (warm: opt-in digest cache, unchanged files not reread).

The sha256 hashing limit is ``hashlib.sha256`` over in-memory buffers on the same number of
threads: the best any verifier reading these bytes could do. Files are in the page cache (as
they are right after ``dvc add``/``dvc checkout``). Prints a markdown table.

Usage: python benchmarks/bench_hooks.py [--files 10000] [--size 1G] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {
    **os.environ,
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@example.org",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@example.org",
    "DVC_NO_ANALYTICS": "1",
}


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("b")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)


def _run(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return secs


def _median(args: list[str], cwd: Path, rounds: int) -> float:
    return statistics.median(_run(args, cwd) for _ in range(rounds))


def sha256_limit(workers: int, seconds: float = 2.0) -> float:
    """Bytes per second of hashlib.sha256 on in-memory data with ``workers`` threads."""
    buf = os.urandom(8 << 20)

    def work(_: int) -> int:
        done, t_end = 0, time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            hashlib.sha256(buf).digest()
            done += len(buf)
        return done

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        total = sum(pool.map(work, range(workers)))
    return total / (time.perf_counter() - t0)


def build(root: Path, files: int, size: int, key_dir: Path) -> None:
    """git + DVC repo with one directory output of ``files`` files, signed and committed."""
    root.mkdir(parents=True)
    _run(["git", "init", "-q"], root)
    _run(["dvc", "init", "-q"], root)
    ds = root / "data" / "ds"
    per = max(1, size // files)
    chunk = os.urandom(per + 4096)
    for i in range(files):
        sub = ds / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        off = i % 4096
        (sub / f"f{i:06d}.bin").write_bytes(i.to_bytes(8, "little") + chunk[off : off + per - 8])
    t = _run(["dvc", "add", "-q", "data/ds"], root)
    print(f"dvc add: {t:.1f}s", file=sys.stderr)
    _run(
        [
            str(BIN / "mlflow-guard"),
            "keys",
            "generate",
            "--purpose",
            "dataset",
            "--name",
            "data",
            "--out",
            str(key_dir),
        ],
        root,
    )
    (root / "guard.yaml").write_text(
        "version: 1\nkeys:\n"
        f"  - {{id: data, public_key: {key_dir / 'data.pub'}, purposes: [dataset]}}\n"
        "datasets: {signers: [data]}\n"
    )
    t = _run([str(BIN / "dvc-guard"), "sign", "--key", str(key_dir / "data.key")], root)
    print(f"dvc-guard sign: {t:.1f}s", file=sys.stderr)
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-q", "-m", "data"], root)


def main() -> int:
    """Build the repo, time the commands, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--size", default="1G", help="total bytes (e.g. 1G, 200M)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--keep", action="store_true", help="keep the temporary repository")
    args = ap.parse_args()
    size = _size(args.size)
    tmp = Path(tempfile.mkdtemp(prefix="bench-hooks-"))
    try:
        root = tmp / "repo"
        build(root, args.files, size, tmp / "keys")
        total = sum(p.stat().st_size for p in (root / "data" / "ds").rglob("*") if p.is_file())
        w = ["--workers", str(args.workers)]
        guard = str(BIN / "dvc-guard")
        dvc_status = _median(["dvc", "status", "-q"], root, args.rounds)
        cold = _median([guard, "verify", "--no-cache", *w], root, args.rounds)
        _run([guard, "verify", "--cache", *w], root)  # prime the digest cache
        warm = _median([guard, "verify", "--cache", *w], root, args.rounds)
        startup = _median([guard, "--help"], root, args.rounds)
        limit = sha256_limit(args.workers)
        cold_rate = total / cold
        cold_rate_net = total / max(cold - startup, 1e-9)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    gb = 1e9
    print(
        f"\n{args.files} files, {total / gb:.2f} GB in one DVC directory output; "
        f"{args.workers} hashing threads; median of {args.rounds} runs; "
        f"{os.cpu_count()} CPUs shared with other jobs.\n"
    )
    print("| operation | time (s) | throughput | vs `dvc status` |")
    print("|---|---:|---:|---:|")
    print(f"| `dvc status` | {dvc_status:.2f} | — | 1.00× |")
    print(f"| `dvc-guard verify --cache` (warm) | {warm:.2f} | — | {warm / dvc_status:.2f}× |")
    print(
        f"| `dvc-guard verify --no-cache` (cold, full sha256 rehash) | {cold:.2f} | "
        f"{cold_rate / gb:.2f} GB/s | {cold / dvc_status:.2f}× |"
    )
    print(
        f"| sha256 limit (hashlib, in memory, {args.workers} threads) | — | "
        f"{limit / gb:.2f} GB/s | — |"
    )
    print(f"| `dvc-guard --help` (interpreter + CLI start-up) | {startup:.2f} | — | — |")
    print(
        f"\nCold verify reaches {cold_rate / limit:.0%} of the sha256 limit end to end, "
        f"{cold_rate_net / limit:.0%} without start-up; warm verify is "
        f"{dvc_status / warm:.1f}× faster than `dvc status`."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
