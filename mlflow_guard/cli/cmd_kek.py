"""``mlflow-guard kek``: key-encryption keys for artifacts encrypted at rest."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from mlflow_guard.cli import _common

if TYPE_CHECKING:
    from mlflow_guard.encryption.kek import LocalKeysetKEK
    from mlflow_guard.encryption.rotation import Mismatch

NAME = "kek"
HELP = "manage the key-encryption key (KEK) of encrypted artifacts: generate, rotate, status"


def register(p: argparse.ArgumentParser) -> None:
    """Add ``kek generate|rotate|status``."""
    sub = p.add_subparsers(dest="kek_command", metavar="SUBCOMMAND")
    g = sub.add_parser("generate", help="create a Tink AEAD keyset file (mode 0600)")
    g.add_argument("--out", required=True, metavar="FILE")
    _common.add_json(g)
    g.set_defaults(func=_generate)
    r = sub.add_parser(
        "rotate",
        help="add a new primary KEK key and re-wrap every artifact's data key under ROOT "
        "(data is not re-encrypted); old keys are retired at the end unless --keep-old, or "
        "unless an artifact is not wrapped by the new key afterwards (exit 1 naming it)",
    )
    r.add_argument("root", metavar="ROOT", help="local artifact root (the inner file store)")
    r.add_argument("--kek", metavar="FILE", help="keyset file (default $MLFLOW_GUARD_KEK_KEYSET)")
    r.add_argument("--keep-old", action="store_true", help="keep old keys in the keyset")
    _common.add_json(r)
    r.set_defaults(func=_rotate)
    s = sub.add_parser(
        "status",
        help="count artifacts under ROOT per key that really wraps their data key (read from "
        "the wrapped key, not the header); exit 1 when a header names another key",
    )
    s.add_argument("root", metavar="ROOT")
    s.add_argument("--kek", metavar="FILE", help=argparse.SUPPRESS)
    _common.add_json(s)
    s.set_defaults(func=_status)
    p.set_defaults(func=lambda a: _help(p))


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _kek(path: str | None) -> LocalKeysetKEK:
    from mlflow_guard.encryption.kek import LocalKeysetKEK

    return LocalKeysetKEK(path) if path else LocalKeysetKEK.from_env()


def _mismatch_json(m: Mismatch) -> dict[str, object]:
    return {"path": m.path, "header_key_id": m.header_key_id, "actual_key_id": m.actual_key_id}


def _print_problems(
    mismatches: list[Mismatch], failed: dict[str, str], not_regular: list[str]
) -> None:
    for m in mismatches:
        print(
            f"HEADER LIES: {m.path}: header names KEK key {m.header_key_id}, data key wrapped "
            f"by {m.actual_key_id if m.actual_key_id is not None else 'an unrecognisable key'}",
            file=sys.stderr,
        )
    for path, why in sorted(failed.items()):
        print(f"FAILED: {path}: {why}", file=sys.stderr)
    for path in not_regular:
        print(f"skipped (not a regular file): {path}", file=sys.stderr)


def _generate(args: argparse.Namespace) -> int:
    from mlflow_guard.encryption.kek import LocalKeysetKEK

    kek = LocalKeysetKEK.generate(args.out)
    if args.json:
        _common.print_json({"ok": True, "keyset": args.out, "primary_key_id": kek.primary_id})
    else:
        print(f"KEK keyset written to {args.out} (mode 0600; primary key {kek.primary_id})")
        print(f"Use it: export MLFLOW_GUARD_KEK_KEYSET={args.out}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from mlflow_guard.encryption import rotation

    rep = rotation.rotate(args.root, _kek(args.kek), keep_old=args.keep_old)
    if args.json:
        _common.print_json(
            {
                "ok": rep.ok,
                "new_primary_key_id": rep.new_primary_key_id,
                "rewrapped": rep.rewrapped,
                "already_current": rep.current,
                "not_encrypted": rep.plaintext,
                "not_regular": rep.not_regular,
                "header_mismatch": [_mismatch_json(m) for m in rep.header_mismatch],
                "failed": rep.failed,
                "retired": rep.retired,
                "kept": rep.kept,
            }
        )
    else:
        print(
            f"new primary KEK key {rep.new_primary_key_id}; re-wrapped {rep.rewrapped} "
            f"artifacts ({rep.current} already current, {rep.plaintext} plaintext files left "
            "alone)"
        )
        _print_problems(rep.header_mismatch, rep.failed, rep.not_regular)
        if rep.retired:
            print(f"retired old keys {rep.retired}")
        elif rep.failed:
            print(
                f"kept old keys {rep.kept}: {len(rep.failed)} artifact(s) are not wrapped by "
                "the new primary key. Next step: restore or remove them, then run "
                "`mlflow-guard kek rotate` again",
                file=sys.stderr,
            )
        if rep.header_mismatch:
            print(
                f"{len(rep.header_mismatch)} artifact header(s) named the wrong KEK key (now "
                "corrected): someone with write access to the store edited them. Next step: "
                "check who can write the artifact store",
                file=sys.stderr,
            )
    return 0 if rep.ok else 1


def _status(args: argparse.Namespace) -> int:
    from mlflow_guard.encryption import rotation

    rep = rotation.status(args.root)
    if args.json:
        _common.print_json(
            {
                "ok": rep.ok,
                "artifacts_by_key": rep.by_key,
                "plaintext": rep.plaintext,
                "not_regular": rep.not_regular,
                "header_mismatch": [_mismatch_json(m) for m in rep.header_mismatch],
                "failed": rep.failed,
            }
        )
    else:
        for k, n in sorted(rep.by_key.items()):
            print(f"{k:>12}: {n}")
        if rep.plaintext:
            print(f"{'plaintext':>12}: {rep.plaintext}")
        _print_problems(rep.header_mismatch, rep.failed, rep.not_regular)
    return 0 if rep.ok else 1
