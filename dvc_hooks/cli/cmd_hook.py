"""``dvc-guard hook pre-commit|pre-push``: what the installed git hooks run."""

from __future__ import annotations

import argparse

NAME = "hook"
HELP = "run the checks of one git hook (called by the hooks `dvc-guard install` writes)"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``hook`` options."""
    p.add_argument("hook", choices=["pre-commit", "pre-push"])
    p.add_argument("--env", action="store_true", help="pre-commit: also run `dvc-guard env`")
    p.add_argument("--cache", action="store_true", help="pre-commit: reuse unchanged digests")
    p.add_argument("git_args", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dvc_hooks.cli import main

    if args.hook == "pre-push":
        return main(["verify", "--pre-push"])
    steps = [["verify", "--staged", *(["--cache"] if args.cache else [])], ["validate", "--staged"]]
    if args.env:
        steps.append(["env"])
    rc = 0
    for step in steps:
        rc = max(rc, main(step))
    return rc
