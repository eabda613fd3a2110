"""``dvc-guard uninstall``: remove dvc-guard's git hooks and restore the previous ones."""

from __future__ import annotations

import argparse

from dvc_hooks import githooks
from dvc_hooks.cli import _args
from mlflow_guard.cli import _common

NAME = "uninstall"
HELP = "remove dvc-guard's git hooks and restore what was there before"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``uninstall`` options."""
    p.add_argument("--repo", metavar="DIR", help="repository (default: the current one)")
    _common.add_json(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    actions = githooks.uninstall(_args.repo(args))
    if args.json:
        _common.print_json(
            {
                "ok": True,
                "hooks": [{"hook": a.hook, "path": str(a.path), "action": a.what} for a in actions],
            }
        )
    else:
        for a in actions:
            print(f"{a.hook}: {a.what} ({a.path})")
    return 0
