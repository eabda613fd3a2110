"""``dvc-guard validate``: the policy's data checks (ML02), with the measured numbers."""

from __future__ import annotations

import argparse

from dvc_hooks import checks, validate
from dvc_hooks.cli import _args
from mlflow_guard.cli import _common
from mlflow_guard.core.errors import GuardError

NAME = "validate"
HELP = "validate tabular datasets (schema, nulls, duplicates, label shift, changed rows)"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``validate`` options."""
    p.add_argument("paths", nargs="*", metavar="PATH", help="only the rules for these data paths")
    p.add_argument(
        "--staged",
        action="store_true",
        help="pre-commit mode: only rules whose data (or its DVC record) is staged",
    )
    _args.add_repo(p)
    _common.add_json(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    root = _args.repo(args)
    policy, _ = checks.load(root, args.policy)
    rules = list(policy.datasets.validate_)
    if args.paths:
        wanted = set(_args.rel_paths(root, args.paths))
        rules = [r for r in rules if r.path in wanted]
    if args.staged:
        changed = validate.changed_paths(root)
        rules = [r for r in rules if r.path in changed]
    result = validate.Result()
    errors: list[GuardError] = []
    for rule in rules:
        try:
            validate.validate_rule(root, rule, result, staged=args.staged)
        except GuardError as e:
            errors.append(e)
    if errors:
        first = errors[0]
        for other in errors[1:]:
            first.details.append(other.summary)
            first.details.extend(other.details)
        first.details.extend(f.line() for f in result.violations)
        raise first
    if args.json:
        _common.print_json(
            {
                "ok": not result.violations,
                "rules": len(rules),
                "findings": [f.__dict__ for f in result.findings],
                "notes": result.notes,
            }
        )
    else:
        for n in result.notes:
            print(f"note: {n}")
        for f in result.findings:
            if f.ok:
                print(f.line())
    result.raise_if_failed()
    if not args.json:
        print(
            f"dvc-guard: {len(rules)} validation rule(s) passed"
            if rules
            else "dvc-guard: no validation rule applies"
        )
    return 0
