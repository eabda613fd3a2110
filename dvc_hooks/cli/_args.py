"""Options shared by the ``dvc-guard`` subcommands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dvc_hooks import dvcfiles, gitutil
from mlflow_guard.cli import _common
from mlflow_guard.core.errors import UsageError


def add_repo(p: argparse.ArgumentParser) -> None:
    """``--repo`` and ``--policy``."""
    p.add_argument("--repo", metavar="DIR", help="git/DVC repository (default: the current one)")
    _common.add_policy(p)


def repo(args: argparse.Namespace) -> Path:
    """The repository root from ``--repo`` or the current directory."""
    return gitutil.repo_root(Path(args.repo) if args.repo else None)


def rel_paths(root: Path, paths: list[str]) -> list[str]:
    """Command-line paths → repository-relative POSIX paths.

    A relative path is taken relative to the current directory when that lands inside the
    repository (running from a subfolder), else relative to the repository root (``--repo``
    used from elsewhere, like ``git -C``).

    Raises:
        UsageError: a path outside the repository.
    """
    out = []
    base = root.resolve()
    for p in paths:
        candidates = [Path(os.path.abspath(p))]
        if not Path(p).is_absolute():
            candidates.append(Path(os.path.normpath(base / p)))
        for full in candidates:
            try:
                out.append(full.relative_to(base).as_posix())
                break
            except ValueError:
                continue
        else:
            raise UsageError(
                f"{p} is outside the repository {root}",
                hint="pass paths inside the repository (or use --repo)",
            )
    return out


def dvc_paths(root: Path, paths: list[str]) -> list[str]:
    """Like :func:`rel_paths`, and each must be a ``.dvc`` file or ``dvc.lock``.

    Raises:
        UsageError: a path outside the repository or not a DVC file.
    """
    files = rel_paths(root, paths)
    bad = [f for f in files if not dvcfiles.is_dvc_file(f)]
    if bad:
        raise UsageError(
            f"not a DVC file: {', '.join(bad)}",
            hint="pass the .dvc file (`data.csv.dvc`) or dvc.lock, not the data itself",
        )
    return files
