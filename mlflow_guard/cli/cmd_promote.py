"""``mlflow-guard promote request|status|list|approve|reject|withdraw``: talk to the guard server.

The server is ``$MLFLOW_TRACKING_URI``; credentials are ``$MLFLOW_TRACKING_TOKEN`` (guard API
token) or ``$MLFLOW_TRACKING_USERNAME`` / ``$MLFLOW_TRACKING_PASSWORD`` (basic auth), as for
the MLflow client. ``approve --file signed.json`` submits an approval signed offline with
``mlflow-guard approve``. A refusal exits 1 with the server's reasons.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from mlflow_guard.cli import _common
from mlflow_guard.core.errors import GuardError, PolicyViolation, UsageError

NAME = "promote"
HELP = "request, inspect, approve or reject promotions to protected aliases/stages/tags"
API = "/api/2.0/mlflow-guard/promotions"


class ServerError(GuardError):
    """The guard server could not be reached or answered unexpectedly."""

    exit_code = 3


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``promote`` sub-subcommands."""
    sub = p.add_subparsers(dest="promote_cmd", required=True, metavar="ACTION")
    for verb, text in (
        ("request", "ask for a promotion (applied once approvals and gates pass)"),
        ("status", "gates, approvals and the decision for a version and target"),
        ("approve", "approve as the logged-in user, or submit a signed approval (--file)"),
        ("reject", "record a rejection (blocks until withdrawn)"),
        ("withdraw", "withdraw your earlier approval or rejection"),
    ):
        sp = sub.add_parser(verb, help=text, description=text)
        file_ok = verb in ("approve", "reject", "withdraw")
        sp.add_argument("model", metavar="MODEL", nargs="?" if file_ok else None)
        sp.add_argument("version", metavar="VERSION", nargs="?" if file_ok else None)
        sp.add_argument(
            "--to", metavar="TARGET", help="alias:NAME, stage:NAME or tag:NAME (bare: alias)"
        )
        if file_ok:
            sp.add_argument("--file", metavar="FILE", help="signed approval (mlflow-guard approve)")
        if verb in ("request", "approve", "reject", "withdraw"):
            sp.add_argument("--comment", default="", help="free text shown to reviewers")
        if verb == "request":
            sp.add_argument("--tag-value", help="value to set for a tag:KEY target")
        _common.add_json(sp)
        sp.set_defaults(func=_run)
    lp = sub.add_parser("list", help="promotion requests (pending by default)")
    lp.add_argument("--state", default="pending", help="pending, promoted, withdrawn or all")
    _common.add_json(lp)
    lp.set_defaults(func=_run)


def _session() -> tuple[str, dict[str, str], Any]:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        raise UsageError(
            "MLFLOW_TRACKING_URI must be the guard server's http(s) URL",
            details=[f"got {uri!r}"],
            hint="export MLFLOW_TRACKING_URI=https://mlflow.example.com",
        )
    headers: dict[str, str] = {}
    auth = None
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    elif user := os.environ.get("MLFLOW_TRACKING_USERNAME"):
        auth = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    else:
        raise UsageError(
            "no credentials for the guard server",
            hint="export MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD",
        )
    return uri.rstrip("/"), headers, auth


def _call(method: str, path: str, *, body: Any = None, params: Any = None) -> dict[str, Any]:
    import requests

    base, headers, auth = _session()
    try:
        r = requests.request(
            method, base + API + path, json=body, params=params, headers=headers, auth=auth,
            timeout=600,
        )  # fmt: skip
    except requests.RequestException as e:
        raise ServerError(f"cannot reach the guard server at {base}: {e}") from e
    try:
        doc = r.json()
    except ValueError as e:
        raise ServerError(f"the server answered {r.status_code} without JSON") from e
    if r.status_code == 200 and isinstance(doc, dict):
        return doc
    msg = str(doc.get("message", r.text)) if isinstance(doc, dict) else r.text
    msg = msg.removeprefix("mlflow-guard: ")
    if r.status_code in (401, 403, 409):
        raise PolicyViolation(msg, details=[f"HTTP {r.status_code}"])
    if r.status_code in (400, 404):
        raise UsageError(msg, details=[f"HTTP {r.status_code}"])
    raise ServerError(msg, details=[f"HTTP {r.status_code}"])


def _target(args: argparse.Namespace) -> dict[str, str]:
    if not args.model or not args.version or not args.to:
        raise UsageError("MODEL, VERSION and --to are required (or --file with a signed approval)")
    return {"name": args.model, "version": str(args.version), "target": args.to}


def _run(args: argparse.Namespace) -> int:
    cmd = args.promote_cmd
    if cmd == "list":
        doc = _call("GET", "/list", params={"state": args.state})
    elif cmd == "status":
        doc = _call("GET", "/status", params=_target(args))
    elif cmd == "request":
        body: dict[str, Any] = {**_target(args), "comment": args.comment}
        if args.tag_value is not None:
            body["tag_value"] = args.tag_value
        doc = _call("POST", "/request", body=body)
    elif args.file:
        try:
            envelope = json.loads(Path(args.file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read signed approval {args.file}: {e}") from e
        doc = _call("POST", f"/{cmd}", body={"envelope": envelope})
    else:
        doc = _call("POST", f"/{cmd}", body={**_target(args), "comment": args.comment})
    if args.json:
        _common.print_json(doc)
    else:
        _print(cmd, doc)
    return 0


def _print(cmd: str, doc: dict[str, Any]) -> None:
    if cmd == "list":
        for r in doc.get("requests", []):
            print(f"#{r['id']} {r['model']} v{r['version']} -> {r['target']}  {r['state']}  "
                  f"(by {r['requested_by']})")  # fmt: skip
        return
    st = doc.get("status", {})
    if "recorded" in doc:
        rec = doc["recorded"]
        print(f"recorded {rec['decision']} by {rec['approver']} ({rec['kind']})")
    print("allowed" if st.get("allowed") else "not yet allowed:")
    for reason in st.get("reasons", []):
        print(f"  - {reason}")
    for g in st.get("gates", []):
        shown = "missing" if g["value"] is None else g["value"]
        print(f"  gate {g['metric']} = {shown} (needs {g['expression']}): "
              f"{'pass' if g['passed'] else 'FAIL'}")  # fmt: skip
    counted = ", ".join(a["approver"] for a in st.get("counted", [])) or "none"
    print(f"  approvals: {counted} (required {st.get('required')})")
    for a in st.get("ignored", []):
        print(f"  ignored {a['approver']}: {a['why']}")
    if doc.get("promoted"):
        print("promoted")
