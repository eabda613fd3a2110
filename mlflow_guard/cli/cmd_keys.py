"""``mlflow-guard keys``: generate key pairs and show key ids."""

from __future__ import annotations

import argparse

from mlflow_guard.cli import _common
from mlflow_guard.core import keys
from mlflow_guard.core.policy import Purpose

NAME = "keys"
HELP = "generate signing keys and show key ids"


def register(p: argparse.ArgumentParser) -> None:
    """Add ``keys generate`` and ``keys id``."""
    sub = p.add_subparsers(dest="keys_command", metavar="SUBCOMMAND")
    g = sub.add_parser("generate", help="generate a key pair (private key mode 0600)")
    g.add_argument(
        "--purpose",
        required=True,
        choices=[x.value for x in Purpose],
        help="what the key will sign (recorded in the policy, printed here)",
    )
    g.add_argument("--out", required=True, metavar="DIR", help="folder for NAME.key and NAME.pub")
    g.add_argument("--name", help="file name stem (default: the purpose)")
    g.add_argument(
        "--algorithm",
        default=keys.Algorithm.ECDSA_P256.value,
        choices=[a.value for a in keys.Algorithm],
        help="ecdsa-p256 (default; what OpenSSF model_signing verifies) or ed25519",
    )
    _common.add_passphrase(g)
    _common.add_json(g)
    g.set_defaults(func=_generate)
    i = sub.add_parser("id", help="print the key id (sha256 of the public key DER)")
    i.add_argument("public_key", metavar="PUB")
    _common.add_json(i)
    i.set_defaults(func=_id)
    p.set_defaults(func=lambda a: _help(p))


def _generate(args: argparse.Namespace) -> int:
    pw = _common.passphrase(args.passphrase_env, prompt=args.passphrase_prompt, confirm=True)
    key = keys.generate(keys.Algorithm(args.algorithm))
    name = args.name or args.purpose
    priv, pub = keys.write_keypair(args.out, name, key, pw)
    kid = keys.key_id(key.public_key())
    if args.json:
        _common.print_json(
            {
                "ok": True,
                "private_key": str(priv),
                "public_key": str(pub),
                "key_id": kid,
                "algorithm": args.algorithm,
                "purpose": args.purpose,
                "encrypted": pw is not None,
            }
        )
    else:
        print(f"private key: {priv} (mode 0600{', encrypted' if pw else ''}; keep it secret)")
        print(f"public key:  {pub}")
        print(f"key id:      {kid}")
        print("Add to guard.yaml:")
        print(f"  keys:\n    - {{id: {name}, public_key: {pub}, purposes: [{args.purpose}]}}")
    return 0


def _id(args: argparse.Namespace) -> int:
    pub = keys.load_public_key(args.public_key)
    out = {
        "key_id": keys.key_id(pub),
        "oms_hint": keys.oms_hint(pub),
        "algorithm": keys.algorithm_name(pub),
    }
    if args.json:
        _common.print_json({"ok": True, **out})
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2
