"""``mlflow-guard verify DIR``: check a model directory against its OMS signature."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mlflow_guard.cli import _common
from mlflow_guard.core import keys, oms
from mlflow_guard.core.errors import UsageError
from mlflow_guard.core.policy import Purpose, load_policy
from mlflow_guard.core.trust import TrustStore

NAME = "verify"
HELP = "verify a model directory against its signature and the policy's trusted model keys"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``verify`` options."""
    p.add_argument("model_dir", metavar="DIR", help="model directory")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--policy",
        metavar="PATH",
        help="trust the policy's keys with purpose 'model'"
        " (default: $MLFLOW_GUARD_POLICY or ./guard.yaml)",
    )
    src.add_argument("--public-key", metavar="PUB", help="trust exactly this public key")
    p.add_argument("--signature", metavar="PATH", help="signature file (default DIR/model.sig)")
    p.add_argument("--workers", type=int, metavar="N", help="hashing threads (default: CPUs)")
    _common.add_quiet(p)
    _common.add_json(p)
    p.set_defaults(func=_run)


def trust_from_args(args: argparse.Namespace) -> TrustStore:
    """``--public-key`` → a one-key store; otherwise the policy's trust store."""
    if getattr(args, "public_key", None):
        return TrustStore.single(keys.load_public_key(args.public_key), [Purpose.MODEL])
    return TrustStore.from_policy(load_policy(args.policy))


def _run(args: argparse.Namespace) -> int:
    root = Path(args.model_dir)
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory", hint="pass the model's directory")
    trust = trust_from_args(args)
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink())
    start = time.perf_counter()
    with _common.progress_bar(total, "verifying", quiet=args.quiet or args.json) as progress:
        res = oms.verify_model(
            root, trust, signature_path=args.signature, workers=args.workers, progress=progress
        )
    secs = time.perf_counter() - start
    out = {
        "ok": True,
        "model": str(root),
        "root_digest": res.root_digest,
        "signer": res.key.name,
        "key_id": res.key.key_id,
        "files": res.files,
        "bytes": res.bytes,
        "hash_type": res.serialization.hash_type,
        "method": res.serialization.method,
        "seconds": round(secs, 3),
    }
    if args.json:
        _common.print_json(out)
    else:
        print(
            f"verified {root}: {res.files} files, {_common.human_bytes(res.bytes)} in {secs:.2f}s"
        )
        print(f"  signer:      {res.key.name} (key id {res.key.key_id})")
        print(f"  root digest: sha256:{res.root_digest}")
    return 0
