"""``dvc-guard env``: offline check of installed packages against pip RECORD (ML06)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dvc_hooks import gitutil
from mlflow_guard.cli import _common

NAME = "env"
HELP = "verify installed packages against pip RECORD sha256, unlisted files, hash-pinned locks"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``env`` options."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--python", metavar="EXE", help="check this interpreter's site-packages")
    src.add_argument(
        "--site-packages",
        action="append",
        default=[],
        metavar="DIR",
        help="check this site-packages folder (repeatable)",
    )
    p.add_argument(
        "--requirements",
        action="append",
        default=None,
        metavar="FILE",
        help="requirement/lock file that must be hash-pinned (repeatable; default: "
        "requirements*.txt and requirements*.lock at the repository root)",
    )
    p.add_argument("--no-site", action="store_true", help="check requirement files only")
    p.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    _common.add_json(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dvc_hooks import env

    search: list[str] = []
    stdlib = None
    if args.site_packages:
        sites = args.site_packages
    else:
        interp = env.interpreter_of(args.python)
        sites, search, stdlib = interp.site_dirs, interp.search_path, interp.stdlib_names
    if args.requirements is not None:
        reqs = [Path(r) for r in args.requirements]
    else:
        try:
            root = gitutil.repo_root()
        except Exception:
            root = None
        reqs = env.find_requirement_files(root) if root else []
    report = env.check(
        sites,
        reqs,
        check_site_packages=not args.no_site,
        search_path=search,
        stdlib_names=stdlib,
    )
    if args.json and report.ok:
        _common.print_json({"ok": True, **report.__dict__})
    elif not args.json:
        print(
            f"checked {report.files_checked} files of {report.distributions} distributions in "
            f"{', '.join(report.site_dirs) or '(none)'}; "
            f"{len(reqs)} requirement file(s)"
        )
        for e in report.editable:
            print(
                f"note: editable install, its code is outside site-packages and not verified: {e}"
            )
        print(f"vulnerability audit: {report.audit}")
    report.raise_if_failed()
    return 0
