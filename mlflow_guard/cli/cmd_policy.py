"""``mlflow-guard policy``: validate guard.yaml and print its JSON Schema."""

from __future__ import annotations

import argparse

from mlflow_guard.cli import _common
from mlflow_guard.core.policy import find_policy, load_policy, policy_schema

NAME = "policy"
HELP = "check a policy file or print the policy JSON Schema"


def register(p: argparse.ArgumentParser) -> None:
    """Add ``policy check`` and ``policy schema``."""
    sub = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    c = sub.add_parser("check", help="validate guard.yaml (fields, key files, references)")
    c.add_argument("path", nargs="?", help="policy file (default: --policy, env or ./guard.yaml)")
    _common.add_policy(c)
    _common.add_json(c)
    c.set_defaults(func=_check)
    s = sub.add_parser("schema", help="print the JSON Schema of guard.yaml")
    s.set_defaults(func=_schema)
    p.set_defaults(func=lambda a: _help(p))


def _check(args: argparse.Namespace) -> int:
    path = find_policy(args.path or args.policy)
    policy = load_policy(path)
    summary = {
        "ok": True,
        "policy": str(path),
        "keys": len(policy.keys),
        "roles": len(policy.roles),
        "access_rules": len(policy.access),
        "protected_targets": len(policy.registry.protected),
    }
    if args.json:
        _common.print_json(summary)
    else:
        print(
            f"{path}: OK ({summary['keys']} keys, {summary['roles']} roles, "
            f"{summary['access_rules']} access rules, "
            f"{summary['protected_targets']} protected targets)"
        )
    return 0


def _schema(args: argparse.Namespace) -> int:
    _common.print_json(policy_schema())
    return 0


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2
