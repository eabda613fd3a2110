"""``mlflow-guard audit``: verify the tamper-evident audit log, export it, sign a checkpoint.

``verify`` reads the chain from the guard database (or an exported JSONL file), recomputes every
link, checks the store's head record and every signed checkpoint with the ``audit`` key, and
names the first entry that was modified, deleted, inserted or reordered (exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mlflow_guard.cli import _common
from mlflow_guard.core import audit, keys
from mlflow_guard.core.errors import UsageError, VerificationError
from mlflow_guard.core.policy import Policy, Purpose
from mlflow_guard.core.trust import TrustStore

if TYPE_CHECKING:
    from mlflow_guard.store import GuardStore

NAME = "audit"
HELP = "verify or export the tamper-evident audit log"


class AuditLogTampered(VerificationError):
    """The audit chain does not verify; carries the full report for ``--json``."""

    def __init__(self, report: audit.ChainReport) -> None:
        assert report.problem is not None
        self.report = report
        super().__init__(
            f"audit log does not verify: {report.problem.kind} entry {report.problem.seq}",
            details=[report.problem.message],
            hint="treat the log after that entry as untrusted; restore the database from a "
            "backup or an export and investigate who had write access",
        )

    def to_json(self) -> dict[str, object]:
        """Error fields plus the verification report."""
        return {**super().to_json(), "report": self.report.to_json()}


def _add_db(p: argparse.ArgumentParser) -> None:
    _common.add_policy(p)
    p.add_argument(
        "--database-uri",
        metavar="URI",
        help="guard database (default: storage.database_uri of the policy)",
    )


def register(p: argparse.ArgumentParser) -> None:
    """Add ``audit verify``, ``audit export`` and ``audit checkpoint``."""
    sub = p.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    v = sub.add_parser("verify", help="verify the hash chain and the signed checkpoints")
    _add_db(v)
    v.add_argument(
        "--public-key",
        metavar="PUB",
        help="audit public key for the checkpoints (default: the policy's keys of purpose audit)",
    )
    v.add_argument(
        "--from-jsonl", metavar="FILE", help="verify an export made by `audit export` instead"
    )
    _common.add_json(v)
    v.set_defaults(func=_verify)
    e = sub.add_parser("export", help="export entries, head and checkpoints as JSON lines")
    _add_db(e)
    e.add_argument("--jsonl", action="store_true", required=True, help="JSON lines (one per row)")
    e.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    e.set_defaults(func=_export)
    c = sub.add_parser("checkpoint", help="sign the current chain head with the audit key now")
    _add_db(c)
    c.add_argument("--key", required=True, metavar="KEY", help="private key of purpose audit")
    _common.add_passphrase(c)
    _common.add_json(c)
    c.set_defaults(func=_checkpoint)
    p.set_defaults(func=lambda a: _help(p))


def _open(args: argparse.Namespace) -> tuple[GuardStore, Policy | None]:
    from mlflow_guard.store.config import open_store

    return open_store(args.policy, args.database_uri)


def _trust(args: argparse.Namespace, policy: Policy | None) -> TrustStore | None:
    if args.public_key:
        return TrustStore.single(keys.load_public_key(args.public_key), [Purpose.AUDIT])
    if policy is None and args.policy:
        from mlflow_guard.core.policy import load_policy

        policy = load_policy(args.policy)
    if policy is not None and any(Purpose.AUDIT in k.purposes for k in policy.keys):
        return TrustStore.from_policy(policy)
    return None


def _schedule(policy: Policy | None) -> audit.CheckpointSchedule | None:
    """The policy's checkpoint schedule, when it has the server sign checkpoints."""
    if policy is None or policy.storage.audit_key is None:
        return None
    st = policy.storage
    return audit.CheckpointSchedule(st.checkpoint_every, st.checkpoint_interval is not None)


def _verify(args: argparse.Namespace) -> int:
    if args.from_jsonl:
        entries, cps, head = _read_jsonl(Path(args.from_jsonl))
        policy = None
        if args.policy:
            from mlflow_guard.core.policy import load_policy

            policy = load_policy(args.policy)
        report = audit.verify_chain(
            entries,
            checkpoints=cps,
            trust=_trust(args, policy),
            head=head,
            schedule=_schedule(policy),
        )
        source = args.from_jsonl
    else:
        from mlflow_guard.store import snapshot

        store, policy = _open(args)
        report = snapshot.verify(store, _trust(args, policy), _schedule(policy))
        source = store.url
    if not report.ok:
        raise AuditLogTampered(report)
    if args.json:
        _common.print_json({**report.to_json(), "source": source})
        return 0
    print(f"audit log {source}: OK")
    print(f"  entries:    {report.entries} (seq 1..{report.head_seq})")
    print(f"  head:       {report.head_hash}")
    print(f"  checkpoints verified: {report.checkpoints_verified}")
    for note in report.notes:
        print(f"  note: {note}")
    return 0


def _export_lines(store: GuardStore) -> Iterator[dict[str, Any]]:
    from mlflow_guard.store import snapshot

    snap = snapshot.take(store)
    for e in snap.entries:
        yield {"kind": "entry", **e.to_json()}
    yield {"kind": "head", "seq": snap.head[0], "entry_hash": snap.head[1]}
    for cp in snap.checkpoints:
        yield {
            "kind": "checkpoint",
            "id": cp.id,
            "seq": cp.seq,
            "entry_hash": cp.entry_hash,
            "created_at": audit.format_time(cp.created_at),
            "envelope": cp.envelope,
        }


def _export(args: argparse.Namespace) -> int:
    store, _ = _open(args)
    out: TextIO
    if args.out:
        try:
            out = open(args.out, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise UsageError(f"cannot write {args.out}: {e.strerror or e}") from e
    else:
        out = sys.stdout
    try:
        for line in _export_lines(store):
            out.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _read_jsonl(
    path: Path,
) -> tuple[list[audit.AuditEntry], list[audit.Checkpoint], tuple[int, str] | None]:
    """Parse an export back into entries, checkpoints and the head record."""
    entries: list[audit.AuditEntry] = []
    cps: list[audit.Checkpoint] = []
    head: tuple[int, str] | None = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            kind = doc.pop("kind")
            if kind == "entry":
                entries.append(audit.AuditEntry.model_validate(doc))
            elif kind == "head":
                head = (int(doc["seq"]), str(doc["entry_hash"]))
            elif kind == "checkpoint":
                cps.append(
                    audit.Checkpoint(
                        int(doc["id"]),
                        int(doc["seq"]),
                        str(doc["entry_hash"]),
                        audit.parse_time(doc["created_at"]),
                        dict(doc["envelope"]),
                    )
                )
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise VerificationError(
                f"{path}:{n}: not a line of an audit export",
                details=[str(e).splitlines()[0]],
                hint="pass a file written by `mlflow-guard audit export --jsonl`",
            ) from e
    return entries, cps, head


def _checkpoint(args: argparse.Namespace) -> int:
    pw = _common.passphrase(args.passphrase_env, prompt=args.passphrase_prompt)
    signer = keys.Signer(keys.load_private_key(args.key, pw))
    store, _ = _open(args)
    cp = store.write_checkpoint(signer)
    if cp is None:
        raise UsageError("the audit log is empty: nothing to checkpoint")
    if args.json:
        _common.print_json(
            {
                "ok": True,
                "id": cp.id,
                "seq": cp.seq,
                "entry_hash": cp.entry_hash,
                "key_id": signer.key_id,
            }
        )
    else:
        print(f"checkpoint {cp.id}: seq {cp.seq}, head {cp.entry_hash}, key {signer.key_id[:16]}…")
    return 0


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2
