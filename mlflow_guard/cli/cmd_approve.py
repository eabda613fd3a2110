"""``mlflow-guard approve MODEL VERSION --to TARGET --key K``: sign a promotion approval."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlflow_guard.cli import _common
from mlflow_guard.core import approvals, keys, oms
from mlflow_guard.core.errors import UsageError
from mlflow_guard.core.policy import parse_duration
from mlflow_guard.core.trust import TrustStore

NAME = "approve"
HELP = "sign an approval (or rejection) of a model version for a protected alias/stage/tag"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``approve`` options."""
    p.add_argument("model", metavar="MODEL", help="registered model name")
    p.add_argument("version", metavar="VERSION", help="model version")
    p.add_argument(
        "--to",
        required=True,
        metavar="TARGET",
        help="alias:NAME, stage:NAME or tag:NAME (a bare name is an alias)",
    )
    p.add_argument("--key", required=True, metavar="KEY", help="private key (purpose: approval)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--root-digest",
        metavar="HEX",
        help="the version's OMS root digest (as the server or `verify` shows it)",
    )
    src.add_argument(
        "--model-dir",
        metavar="DIR",
        help="a local copy of the version's artifacts: verified, digest taken from it",
    )
    p.add_argument(
        "--public-key",
        metavar="PUB",
        help="with --model-dir: trust this model key instead of the policy's",
    )
    _common.add_policy(p)
    p.add_argument("--reject", action="store_true", help="record a rejection instead")
    p.add_argument("--withdraw", action="store_true", help="withdraw an earlier decision")
    p.add_argument("--ttl", default="7d", help="validity of the approval (default 7d)")
    p.add_argument("--comment", default="", help="free text shown to reviewers")
    p.add_argument("--out", metavar="FILE", help="where to write the DSSE envelope (JSON)")
    _common.add_passphrase(p)
    _common.add_json(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.reject and args.withdraw:
        raise UsageError("--reject and --withdraw exclude each other")
    target = approvals.Target.parse(args.to)
    if args.model_dir:
        from mlflow_guard.cli.cmd_verify import trust_from_args

        trust: TrustStore = trust_from_args(args)
        digest = oms.verify_model(args.model_dir, trust).root_digest
    else:
        digest = args.root_digest.lower().removeprefix("sha256:")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise UsageError(f"--root-digest {args.root_digest!r} is not a hex sha256 digest")
    pw = _common.passphrase(args.passphrase_env, prompt=args.passphrase_prompt)
    signer = keys.Signer(keys.load_private_key(args.key, pw))
    decision: approvals.DecisionKind = (
        "reject" if args.reject else "withdraw" if args.withdraw else "approve"
    )
    try:
        ttl = parse_duration(args.ttl)
    except ValueError as e:
        raise UsageError(f"--ttl: {e}", hint="write e.g. 12h, 7d or 2w") from e
    env = approvals.create_signed(
        args.model,
        args.version,
        target,
        digest,
        signer,
        decision=decision,
        ttl=ttl,
        comment=args.comment,
    )
    out = Path(
        args.out or f"approval-{args.model}-v{args.version}-{target.kind}-{target.name}.json"
    )
    out.write_text(json.dumps(env.to_json(), indent=2) + "\n", encoding="utf-8")
    result = {
        "ok": True,
        "approval": str(out),
        "model": args.model,
        "version": args.version,
        "target": str(target),
        "root_digest": digest,
        "decision": decision,
        "key_id": signer.key_id,
    }
    if args.json:
        _common.print_json(result)
    else:
        print(f"{decision} {args.model} v{args.version} -> {target} (root digest {digest[:16]}…)")
        print(f"  written to {out}; submit it with `mlflow-guard promote approve --file {out}`")
    return 0
