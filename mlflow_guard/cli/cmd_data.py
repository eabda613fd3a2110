"""``mlflow-guard data …``: the ``dvc-guard`` commands (signed datasets, validation, hooks)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

NAME = "data"
HELP = "DVC dataset signing, verification, validation and hooks (same as `dvc-guard`)"


def register(p: argparse.ArgumentParser) -> None:
    """Add every ``dvc_hooks.cli.cmd_*`` subcommand under ``data``."""
    import dvc_hooks.cli as pkg

    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=type(p))
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            mod = importlib.import_module(f"dvc_hooks.cli.{info.name}")
            sp = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
            mod.register(sp)
    p.set_defaults(func=lambda a: _help(p))


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2
