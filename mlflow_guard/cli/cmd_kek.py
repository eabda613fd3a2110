"""``mlflow-guard kek``: key-encryption keys for artifacts encrypted at rest."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mlflow_guard.cli import _common
from mlflow_guard.core.errors import UsageError

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
        "(data is not re-encrypted); old keys are retired at the end unless --keep-old",
    )
    r.add_argument("root", metavar="ROOT", help="local artifact root (the inner file store)")
    r.add_argument("--kek", metavar="FILE", help="keyset file (default $MLFLOW_GUARD_KEK_KEYSET)")
    r.add_argument("--keep-old", action="store_true", help="keep old keys in the keyset")
    _common.add_json(r)
    r.set_defaults(func=_rotate)
    s = sub.add_parser("status", help="count artifacts under ROOT per wrapping key")
    s.add_argument("root", metavar="ROOT")
    s.add_argument("--kek", metavar="FILE")
    _common.add_json(s)
    s.set_defaults(func=_status)
    p.set_defaults(func=lambda a: _help(p))


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _kek(path: str | None) -> object:
    from mlflow_guard.encryption.kek import LocalKeysetKEK

    return LocalKeysetKEK(path) if path else LocalKeysetKEK.from_env()


def _files(root: str) -> list[Path]:
    r = Path(root)
    if not r.is_dir():
        raise UsageError(f"{r} is not a directory", hint="pass the local artifact root")
    return [Path(d) / f for d, _, fs in os.walk(r) for f in fs if not f.startswith(".")]


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
    from mlflow_guard.encryption import envelope
    from mlflow_guard.encryption.kek import LocalKeysetKEK

    kek = _kek(args.kek)
    assert isinstance(kek, LocalKeysetKEK)
    old = set(kek.key_ids)
    new = kek.add_primary()
    rewrapped = skipped = 0
    for f in _files(args.root):
        if not envelope.is_encrypted(f):
            skipped += 1
            continue
        if envelope.rewrap(f, kek):
            rewrapped += 1
    if not args.keep_old:
        kek.retire(old)
    out = {
        "ok": True,
        "new_primary_key_id": new,
        "rewrapped": rewrapped,
        "not_encrypted": skipped,
        "retired": [] if args.keep_old else sorted(old),
    }
    if args.json:
        _common.print_json(out)
    else:
        print(
            f"new primary KEK key {new}; re-wrapped {rewrapped} artifacts "
            f"({skipped} plaintext files left alone)"
        )
        if not args.keep_old:
            print(f"retired old keys {sorted(old)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from mlflow_guard.encryption import envelope

    counts: dict[str, int] = {}
    for f in _files(args.root):
        if not envelope.is_encrypted(f):
            counts["plaintext"] = counts.get("plaintext", 0) + 1
            continue
        with open(f, "rb") as fh:
            kid = str(envelope.read_header(fh, source=str(f)).kek_key_id)
        counts[kid] = counts.get(kid, 0) + 1
    if args.json:
        _common.print_json({"ok": True, "artifacts_by_key": counts})
    else:
        for k, n in sorted(counts.items()):
            print(f"{k:>12}: {n}")
    return 0
