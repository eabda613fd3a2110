"""``dvc-guard feedback-check``: every record of the feedback datasets must still verify.

The pre-commit hook ``dvc-guard-feedback`` runs it with the staged files. A hand-edited, forged
or duplicated record blocks the commit and is named by file and line. Freshness is not checked
here (stored records are old by design); authenticity and uniqueness are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dvc_hooks import checks
from dvc_hooks.cli import _args
from mlflow_guard.cli import _common
from mlflow_guard.core.errors import VerificationError

NAME = "feedback-check"
HELP = "verify every record of the feedback datasets (exit 1 naming each bad line)"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``feedback-check`` options."""
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="feedback JSONL files or their .dvc files (default: feedback.datasets of the "
        "policy); files not listed under feedback.datasets are skipped",
    )
    p.add_argument(
        "--any-file",
        action="store_true",
        help="check every given file, even one not listed under feedback.datasets",
    )
    _args.add_repo(p)
    _common.add_json(p)
    p.set_defaults(func=_run)


def check_file(path: Path, checker: object) -> list[str]:
    """Problems of one feedback file, each ``path:line: reason: message``."""
    from mlflow_guard.core.feedback import RecordChecker, Rejection
    from mlflow_guard.core.feedback_records import is_blank

    assert isinstance(checker, RecordChecker)
    problems: list[str] = []
    first_line: dict[tuple[str, str], int] = {}
    for n, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        if is_blank(raw):
            continue
        out = checker.check(raw, 0.0, check_freshness=False)
        if isinstance(out, Rejection):
            problems.append(f"{path}:{n}: {out.reason.value}: {out.message}")
            continue
        key = (out.source, out.id)
        if key in first_line:
            problems.append(
                f"{path}:{n}: replay: record {out.source}/{out.id} repeats line {first_line[key]}"
            )
        else:
            first_line[key] = n
    return problems


def _run(args: argparse.Namespace) -> int:
    from mlflow_guard.core.feedback import RecordChecker, SourceKeys

    root = _args.repo(args)
    policy, trust = checks.load(root, args.policy)
    configured = set(policy.feedback.datasets)
    wanted = [p[: -len(".dvc")] if p.endswith(".dvc") else p for p in args.paths]
    rel = _args.rel_paths(root, wanted) if wanted else sorted(configured)
    targets = [r for r in rel if args.any_file or r in configured]
    checker = RecordChecker(policy.feedback, SourceKeys.from_policy(policy, trust=trust))
    problems: list[str] = []
    checked: list[str] = []
    for r in targets:
        path = root / r
        if not path.is_file():
            if r in configured and not wanted:
                continue
            problems.append(f"{r}: file not found")
            continue
        checked.append(r)
        problems += [p.replace(str(path), r, 1) for p in check_file(path, checker)]
    if problems:
        raise VerificationError(
            f"{len(problems)} feedback record(s) do not verify",
            details=problems,
            hint="restore the file from its last good version (`dvc checkout`), or re-ingest "
            "through `mlflow-guard feedback ingest`; never edit feedback records by hand",
        )
    if args.json:
        _common.print_json({"ok": True, "checked": checked})
    else:
        print(f"feedback-check: {len(checked)} file(s) verified")
    return 0
