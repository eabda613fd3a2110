"""Shared state and helpers for the demo stages."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DemoFailure(Exception):
    """A demo expectation did not hold."""


@dataclass
class Context:
    """What stages share: the work folder and whatever earlier stages stored in ``state``."""

    root: Path
    state: dict[str, Any] = field(default_factory=dict)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Run cleanups (stop servers etc.) in reverse order."""
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # a cleanup failure must not hide the demo's result
                print(f"(cleanup: {e})", file=sys.stderr)


def banner(title: str) -> None:
    """Print a stage heading."""
    print(f"\n=== {title} " + "=" * max(3, 70 - len(title)))


def run_cli(
    args: list[str], *, expect: int, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, echo it and its output, and check its exit code."""
    print(f"$ {shlex.join(args)}")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    for line in (proc.stdout + proc.stderr).rstrip().splitlines():
        print(f"  {line}")
    if proc.returncode != expect:
        raise DemoFailure(f"{shlex.join(args)} exited {proc.returncode}, expected {expect}")
    print(f"  (exit {proc.returncode}, as expected)")
    return proc


def guard(*args: str) -> list[str]:
    """Command line for the mlflow-guard CLI of this interpreter."""
    return [sys.executable, "-m", "mlflow_guard.cli", *args]
