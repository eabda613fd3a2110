"""``mlflow-guard sign DIR --key K``: write an OMS v1.0 signature ``DIR/model.sig``.

The directory is listed once (inside :func:`mlflow_guard.core.oms.sign_model`); the progress bar
gets its total from the hashing layer. The signing core is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import time

from mlflow_guard.cli import _common
from mlflow_guard.cli.cmd_verify import Progress
from mlflow_guard.core import hashing

NAME = "sign"
HELP = "sign a model directory (OpenSSF Model Signing v1.0 bundle in DIR/model.sig)"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``sign`` options."""
    p.add_argument("model_dir", metavar="DIR", help="model directory")
    p.add_argument("--key", required=True, metavar="KEY", help="private key PEM (purpose: model)")
    p.add_argument(
        "--hash",
        dest="hash_type",
        default="sha256",
        choices=hashing.HASH_ALGORITHMS,
        help="digest algorithm (sha256 default; blake3 is faster, verifiable with the "
        "model_signing Python API but not its CLI)",
    )
    p.add_argument(
        "--shards",
        action="store_true",
        help="OMS 'shards' serialization (sha256 only): hash large files in parallel byte "
        "ranges; verifiable with model_signing's Python API, not its CLI",
    )
    p.add_argument("--shard-size", type=int, default=hashing.DEFAULT_SHARD_SIZE, metavar="BYTES")
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="PATH",
        help="path relative to DIR to leave out (repeatable)",
    )
    p.add_argument("--signature", metavar="PATH", help="where to write (default DIR/model.sig)")
    p.add_argument("--workers", type=int, metavar="N", help="hashing threads (default: CPUs)")
    _common.add_passphrase(p)
    _common.add_quiet(p)
    _common.add_json(p)
    p.set_defaults(func=_run)


def _check_args(args: argparse.Namespace) -> None:
    from mlflow_guard.core.errors import UsageError

    if args.shards and args.hash_type == "blake3":
        raise UsageError(
            "--shards cannot be combined with --hash blake3",
            details=[
                "model_signing hashes blake3 'shards' manifests as whole files, so such a "
                "signature would not verify there; blake3 is already multi-threaded"
            ],
            hint="drop --shards (blake3 is parallel per file) or use --hash sha256 --shards",
        )
    if args.shard_size < 1:
        raise UsageError(f"--shard-size must be a positive byte count, got {args.shard_size}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")


def _run(args: argparse.Namespace) -> int:
    from mlflow_guard.core import keys, oms

    _check_args(args)
    pw = _common.passphrase(args.passphrase_env, prompt=args.passphrase_prompt)
    signer = keys.Signer(keys.load_private_key(args.key, pw))
    ignore = hashing.normalize_ignore_paths(args.ignore)
    start = time.perf_counter()
    with Progress("hashing", enabled=not (args.quiet or args.json)) as progress:
        res = oms.sign_model(
            args.model_dir,
            signer,
            hash_type=args.hash_type,
            method="shards" if args.shards else "files",
            shard_size=args.shard_size,
            ignore_paths=ignore,
            signature_path=args.signature,
            workers=args.workers,
            progress=progress,
        )
    secs = time.perf_counter() - start
    out = {
        "ok": True,
        "signature": str(res.signature_path),
        "root_digest": res.root_digest,
        "key_id": res.key_id,
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
            f"signed {args.model_dir}: {res.files} files, {_common.human_bytes(res.bytes)} "
            f"in {secs:.2f}s"
        )
        print(f"  signature:   {res.signature_path}")
        print(f"  root digest: sha256:{res.root_digest}")
        print(f"  key id:      {res.key_id}")
    return 0
