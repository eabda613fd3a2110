"""Helpers shared by subcommands: common options, JSON output, progress bars, passphrases."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mlflow_guard.core.errors import KeyMaterialError


def add_json(p: argparse.ArgumentParser) -> None:
    """``--json``: machine-readable output on stdout."""
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def add_quiet(p: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bar."""
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_policy(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--policy``: path of guard.yaml (else $MLFLOW_GUARD_POLICY or ./guard.yaml)."""
    p.add_argument(
        "--policy",
        required=required,
        metavar="PATH",
        help="policy file (default: $MLFLOW_GUARD_POLICY or ./guard.yaml)",
    )


def print_json(obj: Any) -> None:
    """Print one JSON document on stdout."""
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


@contextmanager
def progress_bar(total: int, desc: str, *, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A byte-count progress bar on stderr; ``None`` when quiet or stderr is not a TTY."""
    if quiet or not sys.stderr.isatty() or total < 64 * 1024 * 1024:
        yield None
        return
    from tqdm import tqdm

    with tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        leave=False,
    ) as bar:
        yield bar.update


def passphrase(env_var: str | None, *, prompt: bool, confirm: bool = False) -> bytes | None:
    """Read a passphrase from ``env_var`` or, if ``prompt``, from the terminal."""
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise KeyMaterialError(
                f"passphrase variable ${env_var} is not set",
                hint=f"export {env_var}=... or use --passphrase-prompt",
            )
        if not value:
            raise KeyMaterialError(
                f"passphrase variable ${env_var} is empty",
                hint=f"put the passphrase in ${env_var}, or drop --passphrase-env",
            )
        return value.encode("utf-8")
    if prompt:
        first = getpass.getpass("Passphrase: ")
        if not first:
            raise KeyMaterialError("the passphrase is empty", hint="type a non-empty passphrase")
        if confirm and getpass.getpass("Repeat passphrase: ") != first:
            raise KeyMaterialError("passphrases do not match", hint="type the same one twice")
        return first.encode("utf-8")
    return None


def add_passphrase(p: argparse.ArgumentParser, default_env: str | None = None) -> None:
    """``--passphrase-env VAR`` and ``--passphrase-prompt``."""
    p.add_argument(
        "--passphrase-env",
        metavar="VAR",
        default=default_env,
        help="read the key passphrase from this environment variable",
    )
    p.add_argument("--passphrase-prompt", action="store_true", help="prompt for the key passphrase")


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"
