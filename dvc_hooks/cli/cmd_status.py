"""``dvc-guard status``: the signature state of every DVC file, without blocking."""

from __future__ import annotations

import argparse

from dvc_hooks import checks, manifests
from dvc_hooks.cli import _args
from mlflow_guard.cli import _common

NAME = "status"
HELP = "show which DVC files are signed, by whom, and whether their data still matches"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``status`` options."""
    p.add_argument("--no-data", action="store_true", help="check signatures only")
    p.add_argument("--exit-code", action="store_true", help="exit 1 when anything is not ok")
    _args.add_repo(p)
    _common.add_json(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    root = _args.repo(args)
    policy, trust = checks.load(root, args.policy)
    files = checks.tracked_dvc_files(root)
    rep = checks.verify_files(
        root,
        files,
        policy,
        trust,
        read=manifests.workspace_reader(root),
        check_data=not args.no_data,
    )
    rows = [{"dvc_file": v.dvc_file, "state": "ok", "signer": v.key.name} for v in rep.ok]
    rows += [
        {"dvc_file": f, "state": type(e).__name__, "reason": e.summary}
        for f, e in rep.failed.items()
    ]
    rows.sort(key=lambda r: r["dvc_file"])
    if args.json:
        _common.print_json({"ok": not rep.failed, "datasets": rows})
    else:
        if not rows:
            print("no DVC files tracked")
        for r in rows:
            extra = f"signed by {r['signer']}" if r["state"] == "ok" else r["reason"]
            print(f"{r['state']:<20} {r['dvc_file']}  {extra}")
    return 1 if (args.exit_code and rep.failed) else 0
