"""``mlflow-guard verify DIR``: check a model directory against its OMS signature.

Start-up matters here (a hook or a deploy step runs it often), so the signing core is imported
only when the command runs, and the directory is listed once: the progress bar learns its total
from the hashing layer (``set_total``) instead of walking the tree itself.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mlflow_guard.cli import _common

if TYPE_CHECKING:
    from mlflow_guard.core.trust import TrustStore

NAME = "verify"
HELP = "verify a model directory against its signature and the policy's trusted model keys"
_BAR_MIN_BYTES = 64 * 1024 * 1024


class Progress:
    """A byte-count progress bar on stderr, created only once the total is known.

    Use as a context manager and pass it as the ``progress`` callback of
    :func:`mlflow_guard.core.hashing.hash_entries`. Nothing is shown (and tqdm is not even
    imported) when ``enabled`` is false, stderr is not a TTY or the work is small.
    """

    def __init__(self, desc: str, *, enabled: bool) -> None:
        self.desc = desc
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._lock = threading.Lock()

    def set_total(self, total: int) -> None:
        """Called by the hashing layer with the bytes it is about to hash."""
        if not self.enabled or total < _BAR_MIN_BYTES or self._bar is not None:
            return
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            desc=self.desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            leave=False,
        )

    def __call__(self, n: int) -> None:
        """Advance by ``n`` bytes (called from hashing threads)."""
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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
    from mlflow_guard.core import keys
    from mlflow_guard.core.policy import Purpose, load_policy
    from mlflow_guard.core.trust import TrustStore

    if getattr(args, "public_key", None):
        return TrustStore.single(keys.load_public_key(args.public_key), [Purpose.MODEL])
    return TrustStore.from_policy(load_policy(args.policy))


def _run(args: argparse.Namespace) -> int:
    from mlflow_guard.core import oms
    from mlflow_guard.core.errors import UsageError

    root = Path(args.model_dir)
    if root.is_symlink() or not root.is_dir():
        raise UsageError(f"{root} is not a directory", hint="pass the model's directory")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    trust = trust_from_args(args)
    start = time.perf_counter()
    with Progress("verifying", enabled=not (args.quiet or args.json)) as progress:
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
