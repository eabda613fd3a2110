"""``dvc-guard sign [PATHS]``: sign DVC outputs into ``X.dvc.sig`` / ``dvc.lock.sig`` sidecars."""

from __future__ import annotations

import argparse
import os
import time

from dvc_hooks import checks, gitutil, manifests
from dvc_hooks.cli import _args
from mlflow_guard.cli import _common
from mlflow_guard.core import keys
from mlflow_guard.core.errors import UsageError

NAME = "sign"
HELP = "sign DVC outputs (sha256 per file, in-toto/DSSE) into git-tracked sidecars"
KEY_ENV = "MLFLOW_GUARD_DATASET_KEY"
PASSPHRASE_ENV = "MLFLOW_GUARD_DATASET_KEY_PASSPHRASE"  # noqa: S105 - a variable name


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``sign`` options."""
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="*.dvc files or dvc.lock (default: every tracked or new DVC file)",
    )
    p.add_argument("--key", metavar="KEY", help=f"private key PEM (default: ${KEY_ENV})")
    p.add_argument("--repo", metavar="DIR", help="repository (default: the current one)")
    _common.add_json(p)
    p.set_defaults(func=_run)


def _targets(args: argparse.Namespace, root: os.PathLike[str]) -> list[str]:
    from pathlib import Path

    r = Path(root)
    if args.paths:
        return _args.dvc_paths(r, args.paths)
    found = checks.workspace_dvc_files(r)
    if not found:
        raise UsageError("no .dvc or dvc.lock file found", hint="run `dvc add` first")
    return found


def _run(args: argparse.Namespace) -> int:
    key_path = args.key or os.environ.get(KEY_ENV)
    if not key_path:
        raise UsageError(
            "no signing key given",
            hint=f"pass --key PATH or set ${KEY_ENV} (passphrase in ${PASSPHRASE_ENV})",
        )
    pw = os.environ.get(PASSPHRASE_ENV)
    signer = keys.Signer(keys.load_private_key(key_path, pw.encode() if pw else None))
    root = _args.repo(args)
    results: list[dict[str, object]] = []
    to_add: list[str] = []
    for f in _targets(args, root):
        t0 = time.perf_counter()
        side, nfiles, nbytes = manifests.sign_dvc_file(root, f, signer)
        to_add += [f, str(side.relative_to(root))]  # the DVC file may not be staged yet
        results.append(
            {
                "dvc_file": f,
                "signature": str(side.relative_to(root)),
                "files": nfiles,
                "bytes": nbytes,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        if not args.json:
            print(
                f"signed {f}: {nfiles} files, {_common.human_bytes(nbytes)} -> "
                f"{side.relative_to(root)}"
            )
    if args.json:
        _common.print_json({"ok": True, "key_id": signer.key_id, "signed": results})
    else:
        print(f"key id {signer.key_id}\nNext step: git add -- {gitutil.shell_args(to_add)}")
    return 0
