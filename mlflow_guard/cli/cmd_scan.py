"""``mlflow-guard scan PATH``: report code a model's files would run when loaded."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlflow_guard.cli import _common
from mlflow_guard.core.errors import EXIT_OK, EXIT_VIOLATION, UsageError
from mlflow_guard.core.policy import load_policy
from mlflow_guard.core.policy.scan import ScanPolicy
from mlflow_guard.core.scan import Allowlist, ScanReport, scan_directory

NAME = "scan"
HELP = "scan model files (pickle, joblib, PyTorch, numpy, skops, ...) for code they would run"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``scan`` options."""
    p.add_argument("path", metavar="PATH", help="model directory or file")
    p.add_argument(
        "--policy",
        metavar="PATH",
        help="take extra allowed imports from this policy's 'scan' section",
    )
    p.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="IMPORT",
        help="also allow this import (module.name, module.* or package.**); repeatable",
    )
    p.add_argument(
        "--no-second-opinion",
        action="store_true",
        help="do not also run picklescan (used when installed; its dangerous findings count)",
    )
    _common.add_json(p)
    p.set_defaults(func=_run)


def _scan_policy(policy_path: str | None) -> ScanPolicy:
    if not policy_path:
        return ScanPolicy()
    policy = load_policy(policy_path)
    section = getattr(policy, "scan", None)
    return section if isinstance(section, ScanPolicy) else ScanPolicy()


def _print_text(root: Path, report: ScanReport) -> None:
    formats = ", ".join(f"{k} {v}" for k, v in sorted(report.formats.items())) or "none"
    if report.safe:
        print(f"scanned {root}: {report.files_scanned} files, no findings ({formats})")
        return
    print(f"scanned {root}: {report.files_scanned} files, {len(report.findings)} findings")
    for f in report.findings:
        print(f"  {f.path}: {f.reason}")
    print(
        "Next step: do not load these files; rebuild the model from trusted code, or, if an "
        "import is legitimate, add it to scan.allow_imports in the policy."
    )


def _run(args: argparse.Namespace) -> int:
    root = Path(args.path)
    if not root.exists():
        raise UsageError(f"{root} does not exist", hint="pass a model directory or file")
    section = _scan_policy(args.policy)
    allowlist: Allowlist = section.allowlist().extend(args.allow)
    report = scan_directory(root, allowlist, max_bytes=section.max_bytes)
    if not args.no_second_opinion:
        from mlflow_guard.scanning import second_opinion

        report = second_opinion(root, report)
    if args.json:
        _common.print_json({"ok": report.safe, "path": str(root), **report.to_json()})
    else:
        _print_text(root, report)
    return EXIT_OK if report.safe else EXIT_VIOLATION
