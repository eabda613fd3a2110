"""``mlflow-guard keys``: generate key pairs, show key ids, and find what a key signed."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mlflow_guard.cli import _common
from mlflow_guard.core import keys
from mlflow_guard.core.errors import UsageError
from mlflow_guard.core.policy import Purpose, load_policy

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
    u = sub.add_parser(
        "usage",
        help="list registered model versions signed by KEY, or (no KEY) every version whose "
        "signer the policy no longer trusts",
    )
    u.add_argument(
        "key",
        nargs="*",
        metavar="KEY",
        help="key id (64 hex), public key file, or key name in the policy",
    )
    u.add_argument("--tracking-uri", help="MLflow tracking/registry URI (default: MLflow's)")
    _common.add_policy(u)
    _common.add_json(u)
    u.set_defaults(func=_usage)
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


def _key_ids(refs: list[str], policy_keys: dict[str, Path]) -> list[str]:
    out = []
    for ref in refs:
        if re.fullmatch(r"[0-9a-f]{64}", ref):
            out.append(ref)
        elif ref in policy_keys:
            out.append(keys.key_id(keys.load_public_key(policy_keys[ref])))
        elif Path(ref).is_file():
            out.append(keys.key_id(keys.load_public_key(ref)))
        else:
            raise UsageError(
                f"{ref!r} is not a key id, a key name in the policy or a public key file",
                hint="pass the 64-hex key id (`mlflow-guard keys id PUB`), the policy's key id "
                "field, or the path of the public key",
            )
    return out


def _usage(args: argparse.Namespace) -> int:
    import mlflow

    from mlflow_guard.registry.key_usage import signed_versions

    policy = load_policy(args.policy)
    ids = _key_ids(args.key, {k.id: policy.key_path(k) for k in policy.keys}) if args.key else None
    client = mlflow.MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
    usage = signed_versions(client, policy, ids)
    found, unsigned = usage.versions, usage.unsigned
    rows = found if ids is not None else [v for v in found if v.status != "trusted"]
    exposed = [v for v in rows if v.status != "trusted" and v.protected]
    if args.json:
        _common.print_json(
            {
                "ok": not exposed,
                "versions": [v.to_json() for v in rows],
                "untrusted_holding_protected": len(exposed),
                "checked": usage.guarded,
                "without_signer_tag": unsigned,
            }
        )
        return 1 if exposed else 0
    what = "signed by the given key(s)" if ids is not None else "signed by a key not trusted now"
    if not rows:
        print(f"no registered model version {what} ({usage.guarded} guarded versions checked)")
    else:
        print(f"{'MODEL':<28}{'VER':<5}{'SIGNER':<14}{'KEY':<18}{'STATUS':<15}{'BY':<12}PROTECTED")
        for v in rows:
            held = ", ".join(v.protected) or "-"
            print(
                f"{v.name:<28}{v.version:<5}{v.signer:<14}{v.key_id[:16]:<18}{v.status:<15}"
                f"{v.created_by or '-':<12}{held}"
            )
    if unsigned:
        print(f"({unsigned} version(s) carry no signer tag: registered without guard)")
    if exposed:
        names = ", ".join(f"{v.name} v{v.version}" for v in exposed)
        print(
            f"{len(exposed)} version(s) hold a protected target with an untrusted signer: {names}\n"
            "Next step: move the protected aliases/stages to a version signed by a trusted key "
            "(re-sign and register it, then promote it with approvals)"
        )
        return 1
    return 0


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2
