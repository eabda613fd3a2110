"""``dvc-guard install``: blocking git hooks (pre-commit, pre-push) chained with existing ones."""

from __future__ import annotations

import argparse

from dvc_hooks import githooks
from dvc_hooks.cli import _args
from mlflow_guard.cli import _common

NAME = "install"
HELP = "install blocking pre-commit/pre-push git hooks (keeps and runs existing hooks)"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``install`` options."""
    p.add_argument("--with-env", action="store_true", help="also run `dvc-guard env` in pre-commit")
    p.add_argument(
        "--cache",
        action="store_true",
        help="let the pre-commit hook reuse digests of unchanged files (developer machines)",
    )
    p.add_argument("--repo", metavar="DIR", help="repository (default: the current one)")
    _common.add_json(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    root = _args.repo(args)
    extra = " ".join(
        x for x in ("--env" if args.with_env else "", "--cache" if args.cache else "") if x
    )
    actions = githooks.install(root, extra_args={"pre-commit": extra})
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
