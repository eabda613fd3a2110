"""Benchmark: dvc-guard verify (cold and warm) against `dvc status` and the sha256 limit.

Builds a git + DVC repository with ``--files`` files totalling ``--size`` bytes in one
DVC-tracked directory (``dvc add``), signs it with ``dvc-guard sign``, then times, each as the
median of ``--rounds`` runs of the real command line (interpreter start-up included):

- ``dvc status`` (DVC's own check: its inode/mtime/size state cache, no hashing);
- ``dvc-guard verify --no-cache`` (cold: every byte rehashed with sha256, as pre-push does);
- ``dvc-guard verify --cache`` (warm: opt-in digest cache, unchanged files not reread);

and, in this process, the listing + hashing phase alone (``tree_hashing.hash_tree``, what the cold
verify runs per directory output), next to the phase as the CLI reports it (``hash_seconds``:
measured in the child that hashes while the parent starts up, see ``dvc_hooks.prefetch``).

The sha256 hashing limit is ``hashlib.sha256`` over in-memory buffers on the same number of
threads: the best any verifier reading these bytes could do. Files are in the page cache (as
they are right after ``dvc add``/``dvc checkout``). Every round runs each measurement once
(interleaved), so all rows see the same machine load; ratios are medians of per-round ratios.
The end-to-end ratio cannot reach 80 %: interpreter + CLI start-up alone is most of the
limit's time. Prints a markdown table.

Usage: python benchmarks/bench_hooks.py [--files 10000] [--size 1G] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Timing:
    """Wall-clock and CPU seconds (user + system) of one measurement."""

    wall: float
    cpu: float
    stdout: str = ""


def _run(args: list[str], cwd: Path) -> Timing:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu, proc.stdout)


def sha256_limit(total: int, workers: int) -> Timing:
    """hashlib.sha256 over ``total`` bytes of in-memory data on ``workers`` threads."""
    buf = os.urandom(8 << 20)
    share = total // workers

    def work(_: int) -> None:
        left = share
        while left > 0:
            n = min(left, len(buf))
            hashlib.sha256(memoryview(buf)[:n]).digest()
            left -= n

    c0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(workers)))
    return Timing(time.perf_counter() - t0, time.process_time() - c0)


def hash_phase(ds: Path, workers: int) -> Timing:
    """Listing + hashing of the data directory in this process, as the cold verify does it."""
    from mlflow_guard.core import tree_hashing

    c0, t0 = time.process_time(), time.perf_counter()
    tree_hashing.hash_tree(ds, workers=workers)
    return Timing(time.perf_counter() - t0, time.process_time() - c0)


def _median(xs: list[Timing]) -> Timing:
    return Timing(statistics.median(x.wall for x in xs), statistics.median(x.cpu for x in xs))


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
    print(f"dvc add: {t.wall:.1f}s", file=sys.stderr)
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
    print(f"dvc-guard sign: {t.wall:.1f}s", file=sys.stderr)
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
        status, cold, warm, limit, startup, phase = [], [], [], [], [], []
        _run([guard, "verify", "--cache", *w], root)  # prime the digest cache
        for _ in range(args.rounds):  # interleaved, so every row sees the same machine load
            status.append(_run(["dvc", "status", "-q"], root))
            limit.append(sha256_limit(total, args.workers))
            cold.append(_run([guard, "verify", "--no-cache", "--json", *w], root))
            phase.append(hash_phase(root / "data" / "ds", args.workers))
            warm.append(_run([guard, "verify", "--cache", *w], root))
            startup.append(_run([guard, "--help"], root))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    st, co, wa, li, su, ph = (_median(x) for x in (status, cold, warm, limit, startup, phase))
    paired = statistics.median(lim.wall / c.wall for lim, c in zip(limit, cold, strict=True))
    hash_secs = [json.loads(c.stdout)["hash_seconds"] for c in cold]
    paired_hash = statistics.median(lim.wall / h for lim, h in zip(limit, hash_secs, strict=True))
    paired_phase = statistics.median(lim.wall / p.wall for lim, p in zip(limit, phase, strict=True))
    hs = statistics.median(hash_secs)
    prefetched = {json.loads(c.stdout).get("prefetched_outputs", 0) for c in cold}
    gb = 1e9
    load = os.getloadavg()[0]
    print(
        f"\n{args.files} files, {total / gb:.2f} GB in one DVC directory output (page cache "
        f"warm); {args.workers} hashing threads; median of {args.rounds} interleaved rounds; "
        f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the end"
        + (" (busy: wall times are inflated, CPU times are shown too)" if load > 1.5 else "")
        + ".\n"
    )
    print("| operation | wall (s) | CPU (s) | throughput (wall) | vs sha256 limit (wall) |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| sha256 limit: hashlib on the same bytes in memory, {args.workers} threads | "
        f"{li.wall:.2f} | {li.cpu:.2f} | {total / li.wall / gb:.2f} GB/s | 100 % |"
    )
    print(
        f"| listing + hashing (`tree_hashing.hash_tree`, in process) "
        f"| {ph.wall:.2f} | {ph.cpu:.2f} "
        f"| {total / ph.wall / gb:.2f} GB/s | {paired_phase:.0%} |"
    )
    print(
        f"| … the same phase inside `dvc-guard verify --no-cache` (in its prefetch child, "
        f"sharing the CPUs with start-up and the signature check) | {hs:.2f} | — | "
        f"{total / hs / gb:.2f} GB/s | {paired_hash:.0%} |"
    )
    print(
        f"| `dvc-guard verify --no-cache` end to end (cold, full sha256 rehash) | {co.wall:.2f} "
        f"| {co.cpu:.2f} | {total / co.wall / gb:.2f} GB/s | {paired:.0%} |"
    )
    print(
        f"| `dvc-guard --help` (interpreter + CLI start-up) | {su.wall:.2f} | {su.cpu:.2f} "
        "| — | — |"
    )
    print(f"| `dvc status` | {st.wall:.2f} | {st.cpu:.2f} | — | — |")
    print(
        f"| `dvc-guard verify --cache` (warm) | {wa.wall:.2f} | {wa.cpu:.2f} | — | — "
        f"({wa.wall / st.wall:.2f}× `dvc status`) |"
    )
    target = 0.8
    print(
        f"\nListing + hashing reaches {paired_phase:.1%} of the sha256 limit in process "
        f"({li.cpu / ph.cpu:.1%} per CPU-second; target {target:.0%}: "
        f"{'met' if min(paired_phase, li.cpu / ph.cpu) >= target else 'NOT met'}, judged on "
        "both, as a busy machine flatters the wall ratio by starving the limit's threads too) "
        f"and {paired_hash:.0%} inside the "
        f"CLI, where it overlaps start-up (prefetched outputs per run: {sorted(prefetched)}). "
        f"End to end, "
        f"start-up and signature checks included, cold verify reaches {paired:.0%} in wall "
        f"time and {li.cpu / co.cpu:.0%} in CPU time (target {target:.0%}: "
        f"{'met' if paired >= target else 'not met'}; start-up alone takes {su.wall:.2f} s). "
        f"Warm verify takes {wa.wall:.2f} s, {st.wall / wa.wall:.1f}× faster than `dvc status`."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
