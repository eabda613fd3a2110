"""Options shared by the ``dvc-guard`` subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from dvc_hooks import gitutil
from mlflow_guard.cli import _common


def add_repo(p: argparse.ArgumentParser) -> None:
    """``--repo`` and ``--policy``."""
    p.add_argument("--repo", metavar="DIR", help="git/DVC repository (default: the current one)")
    _common.add_policy(p)


def repo(args: argparse.Namespace) -> Path:
    """The repository root from ``--repo`` or the current directory."""
    return gitutil.repo_root(Path(args.repo) if args.repo else None)


def rel_paths(root: Path, paths: list[str]) -> list[str]:
    """Command-line paths → repository-relative POSIX paths."""
    out = []
    for p in paths:
        full = Path(p).resolve() if not Path(p).is_absolute() else Path(p)
        try:
            out.append(full.relative_to(root.resolve()).as_posix())
        except ValueError:
            out.append(Path(p).as_posix())
    return out
