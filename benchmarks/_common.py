"""Shared helpers for ``benchmarks/bench_*.py``: timing, machine notes, markdown tables, trees.

Benchmarks are scripts, not tests: each measures in one run and prints a markdown table with
ratios against a named baseline. Import as ``from benchmarks import _common`` (run from the
repository root) or ``import _common`` (run as ``python benchmarks/bench_x.py``).
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

GB = 1_000_000_000
BIN = Path(sys.executable).parent


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_cmd(argv: Sequence[str], *, env: dict[str, str] | None = None) -> float:
    """Wall seconds of a command (start-up included); raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    secs = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return secs


def timed_cpu(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call in this process (CPU: all its threads)."""
    cpu, start = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def run_cmd_cpu(argv: Sequence[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of a command, start-up included; CPU = user + system of the child.

    CPU seconds are what other jobs on a shared machine disturb least.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = run_cmd(argv)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def median(xs: Sequence[float]) -> float:
    """Median of the measurements."""
    return statistics.median(xs)


def spread(xs: Sequence[float]) -> str:
    """``min–max`` of a set of seconds, for the table."""
    return f"{min(xs):.2f}–{max(xs):.2f}"


def load() -> float:
    """1-minute load average (0.0 where unknown)."""
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return 0.0


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def machine_note(shared: bool) -> str:
    """One line describing the machine (and whether others were using it)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    note = (
        f"{usable_cpus()} usable CPUs ({cpu}), Python {platform.python_version()}, "
        f"load average {load():.1f} at the end"
    )
    if shared:
        note += "; machine shared with other jobs: absolute numbers are noisy, compare ratios"
    return note


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def rate(nbytes: int, secs: float) -> str:
    """``1.23 GB/s``."""
    return f"{nbytes / secs / GB:.2f} GB/s" if secs > 0 else "n/a"


def write_file(path: Path, size: int, block: bytes) -> None:
    """Write ``size`` bytes made of repeats of ``block``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def synthetic_model(root: Path, total: int, *, large_share: float = 0.85) -> tuple[int, int]:
    """A model directory like a sharded checkpoint: 4 equal large files plus many small ones.

    Returns:
        (number of files, total bytes).
    """
    block = os.urandom(16 * 1024 * 1024)
    large = int(total * large_share)
    count = 0
    for i in range(4):
        write_file(root / f"model-{i + 1:05d}-of-00004.safetensors", large // 4, block)
        count += 1
    left = total - (large // 4) * 4
    i = 0
    while left > 0:
        size = min(left, 64 * 1024 + (i * 7919) % (512 * 1024))
        sub = root / ("tokenizer" if i % 3 == 0 else f"extra/part{i % 7}")
        write_file(sub / f"f{i:05d}.bin", size, os.urandom(min(size, 4096)))
        left -= size
        count += 1
        i += 1
    return count, total


def warm(root: Path) -> int:
    """Read every file once so the page cache is warm; returns the bytes read."""
    n = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                while chunk := f.read(16 * 1024 * 1024):
                    n += len(chunk)
    return n
