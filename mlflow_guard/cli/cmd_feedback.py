"""``mlflow-guard feedback``: ingest signed feedback records; list, show and release quarantine.

``feedback ingest IN.jsonl --into data/feedback.jsonl`` appends only authentic, fresh, unique,
within-quota and plausibly distributed records to the dataset file (a DVC output) and puts every
other record, byte-for-byte, into the quarantine file (``data/feedback.quarantine.jsonl`` by
default). Exit 0 when every record was accepted, 1 when any was quarantined.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

from mlflow_guard.cli import _common
from mlflow_guard.core import keys
from mlflow_guard.core.errors import UsageError
from mlflow_guard.core.policy import load_policy

NAME = "feedback"
HELP = "ingest signed feedback records (OWASP ML08); manage the feedback quarantine"


def register(p: argparse.ArgumentParser) -> None:
    """Add ``ingest`` and ``quarantine list|show|release``."""
    sub = p.add_subparsers(dest="feedback_command", metavar="ACTION")
    ing = sub.add_parser("ingest", help="verify a JSONL batch and append accepted records")
    ing.add_argument("inputs", nargs="+", metavar="IN.jsonl", help="batch file(s); - for stdin")
    ing.add_argument("--into", required=True, metavar="PATH", help="dataset JSONL file")
    _quarantine_opt(ing)
    ing.add_argument("--db", metavar="URI", help="guard database (default: policy storage)")
    ing.add_argument(
        "--key", metavar="KEY", help="dataset-purpose key: sign a feedback-batch attestation"
    )
    ing.add_argument(
        "--dvc",
        action="store_true",
        help="after ingestion `dvc add` INTO and re-sign its .dvc manifest with --key",
    )
    ing.add_argument(
        "--attestation-dir", metavar="DIR", help="where attestations go (default: INTO.batches/)"
    )
    _common.add_passphrase(ing)
    _common.add_policy(ing)
    _common.add_json(ing)
    ing.set_defaults(func=_ingest)

    q = sub.add_parser("quarantine", help="list, show or release quarantined records")
    qsub = q.add_subparsers(dest="quarantine_command", metavar="ACTION")
    ls = qsub.add_parser("list", help="list quarantined records")
    ls.add_argument("--all", action="store_true", help="include released entries")
    show = qsub.add_parser("show", help="show one entry and its exact bytes")
    show.add_argument("qid", metavar="QID")
    show.add_argument("--raw", action="store_true", help="write only the raw bytes to stdout")
    rel = qsub.add_parser("release", help="re-verify one entry and add it to the dataset (admin)")
    rel.add_argument("qid", metavar="QID")
    rel.add_argument("--as", dest="user", metavar="USER", help="who releases (needs 'admin')")
    rel.add_argument("--db", metavar="URI", help="guard database (default: policy storage)")
    for sp in (ls, show, rel):
        sp.add_argument("--into", metavar="PATH", help="dataset JSONL file")
        _quarantine_opt(sp)
        sp.add_argument(
            "--table",
            action="store_true",
            help="use the server's quarantine table (guard database) instead of the file",
        )
        _common.add_policy(sp)
        _common.add_json(sp)
    ls.add_argument("--db", metavar="URI", help="guard database (default: policy storage)")
    show.add_argument("--db", metavar="URI", help="guard database (default: policy storage)")
    ls.set_defaults(func=_list)
    show.set_defaults(func=_show)
    rel.set_defaults(func=_release)


def _quarantine_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quarantine", metavar="PATH", help="quarantine file (default: INTO.quarantine.jsonl)"
    )


def _qpath(args: argparse.Namespace) -> Path:
    if args.quarantine:
        return Path(args.quarantine)
    if args.into:
        into = Path(args.into)
        return into.with_name(into.stem + ".quarantine.jsonl")
    raise UsageError(
        "no quarantine file given", hint="pass --into DATASET or --quarantine PATH (or --table)"
    )


def _read_inputs(paths: list[str]) -> bytes:
    chunks = []
    for p in paths:
        try:
            data = sys.stdin.buffer.read() if p == "-" else Path(p).read_bytes()
        except OSError as e:
            raise UsageError(f"cannot read {p}: {e.strerror or e}", hint="check the path") from e
        chunks.append(data if data.endswith(b"\n") or not data else data + b"\n")
    return b"".join(chunks)


def _ingest(args: argparse.Namespace) -> int:
    from mlflow_guard.core.trust import TrustStore
    from mlflow_guard.feedback import attest
    from mlflow_guard.feedback.destinations import FileDestination, FileQuarantineSink
    from mlflow_guard.feedback.ingest import Ingestor
    from mlflow_guard.feedback.quarantine import QuarantineFile
    from mlflow_guard.feedback.store import FeedbackStore, database_uri

    policy = load_policy(args.policy)
    trust = TrustStore.from_policy(policy)
    signer = None
    if args.key:
        pw = _common.passphrase(args.passphrase_env, prompt=args.passphrase_prompt)
        signer = keys.Signer(keys.load_private_key(args.key, pw))
        attest.dataset_signer(trust, signer)
    if args.dvc and signer is None:
        raise UsageError("--dvc needs --key", hint="pass the dataset-purpose private key")
    data = _read_inputs(args.inputs)
    into = Path(args.into)
    store = FeedbackStore(database_uri(policy, args.db))
    qfile = QuarantineFile(_qpath(args))
    dest = FileDestination(into)
    ing = Ingestor(policy, store, dest, FileQuarantineSink(qfile), trust=trust)
    result = ing.ingest(data)
    out = result.summary()
    out.update(
        ok=not (result.quarantined or result.uncommitted),
        into=str(into),
        quarantine=str(qfile.path),
    )
    if args.dvc and signer is not None and result.accepted:
        from mlflow_guard.feedback.dvc import add_and_resign

        dvc_file, sidecar = add_and_resign(into, signer)
        out.update(dvc_file=str(dvc_file), dvc_signature=str(sidecar))
    if signer is not None and result.accepted:
        adir = (
            Path(args.attestation_dir)
            if args.attestation_dir
            else into.with_name(into.name + ".batches")
        )
        out["attestation"] = str(
            attest.write(result, into, signer, trust, adir, time.time(), dest.size_after)
        )
    store.dispose()
    if args.json:
        _common.print_json(out)
    else:
        by_src = ", ".join(f"{s}: {n}" for s, n in sorted(out["accepted_by_source"].items()))
        print(
            f"batch {result.batch_id}: {len(result.accepted)} accepted ({by_src or 'none'}), "
            f"{len(result.quarantined)} quarantined"
        )
        for r in out["rejections"]:
            print(f"  line {r['line']}: {r['reason']}: {r['message']} (quarantine {r['qid'][:12]})")
        if "attestation" in out:
            print(f"  attestation: {out['attestation']}")
        if "dvc_signature" in out:
            print(f"  re-signed:   {out['dvc_signature']}")
        if result.uncommitted:
            print(
                f"repaired {args.into}: {len(result.uncommitted)} line(s) an earlier batch "
                "appended without committing were moved to the quarantine (reason uncommitted)"
            )
            for e in result.uncommitted:
                print(f"  byte {e.detail['offset']}: {e.message} (quarantine {e.qid[:12]})")
        if result.quarantined or result.uncommitted:
            print(
                f"Next step: review with `mlflow-guard feedback quarantine list --quarantine "
                f"{qfile.path}`"
            )
    return 0 if not (result.quarantined or result.uncommitted) else 1


def _entries(args: argparse.Namespace) -> list[object]:
    from mlflow_guard.feedback.quarantine import Entry, QuarantineFile
    from mlflow_guard.feedback.store import FeedbackStore, database_uri

    if args.table:
        store = FeedbackStore(database_uri(load_policy(args.policy), args.db))
        rows = [Entry.from_row(r) for r in store.quarantine_rows()]
        store.dispose()
        return list(rows)
    return list(QuarantineFile(_qpath(args)).entries())


def _find(args: argparse.Namespace) -> object:
    from mlflow_guard.feedback.quarantine import Entry

    found = [
        e
        for e in _entries(args)
        if isinstance(e, Entry)
        and (e.qid == args.qid or (len(args.qid) >= 6 and e.qid.startswith(args.qid)))
    ]
    if len(found) != 1:
        raise UsageError(
            f"quarantine entry {args.qid!r} {'not found' if not found else 'is ambiguous'}",
            hint="list entries with `mlflow-guard feedback quarantine list`",
        )
    return found[0]


def _list(args: argparse.Namespace) -> int:
    from mlflow_guard.feedback.quarantine import QUARANTINED, Entry

    entries = [e for e in _entries(args) if isinstance(e, Entry)]
    if not args.all:
        entries = [e for e in entries if e.status == QUARANTINED]
    if args.json:
        _common.print_json({"ok": True, "entries": [e.to_json(with_raw=False) for e in entries]})
        return 0
    for e in entries:
        print(
            f"{e.qid[:12]}  {e.status:<11} batch {e.batch_id[:8]} line {e.line:<5} "
            f"{e.reason:<15} {e.message}"
        )
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from mlflow_guard.feedback.quarantine import Entry

    e = _find(args)
    assert isinstance(e, Entry)
    if args.raw:
        sys.stdout.buffer.write(e.raw)
        return 0
    if args.json:
        _common.print_json({"ok": True, **e.to_json()})
        return 0
    for k, v in e.to_json(with_raw=False).items():
        print(f"{k:>12}: {v}")
    try:
        print(f"{'raw':>12}: {e.raw.decode('utf-8')}")
    except UnicodeDecodeError:
        print(f"{'raw (b64)':>12}: {base64.b64encode(e.raw).decode('ascii')}")
    return 0


def _release(args: argparse.Namespace) -> int:
    from mlflow_guard.feedback.admin import require_admin
    from mlflow_guard.feedback.destinations import (
        FileDestination,
        FileQuarantineSink,
        TableDestination,
        TableQuarantineSink,
    )
    from mlflow_guard.feedback.ingest import Destination, Ingestor
    from mlflow_guard.feedback.quarantine import Entry, QuarantineFile
    from mlflow_guard.feedback.store import FeedbackStore, Tx, database_uri

    policy = load_policy(args.policy)
    user = require_admin(policy, args.user)
    e = _find(args)
    assert isinstance(e, Entry)
    store = FeedbackStore(database_uri(policy, args.db))
    now = time.time()
    dest: Destination
    if args.table:
        dest = TableDestination()
        ing = Ingestor(policy, store, dest, TableQuarantineSink())

        def mark(tx: Tx) -> bool:
            return store.mark_released(tx, e.qid, user, now)
    else:
        if not args.into:
            raise UsageError("release needs --into DATASET", hint="pass the dataset JSONL file")
        qfile = QuarantineFile(_qpath(args))
        ing = Ingestor(policy, store, FileDestination(args.into), FileQuarantineSink(qfile))
        marked: list[Entry] = []

        def mark(tx: Tx) -> bool:
            marked.append(qfile.set_released(e.qid, user, now))
            return True

    try:
        rec = ing.release(e, user, mark)
    except BaseException:
        for m in marked:  # the transaction rolled back: the file's mark must too
            qfile.undo_release(m)
        raise
    finally:
        store.dispose()
    out = {"ok": True, "qid": e.qid, "source": rec.source, "id": rec.id, "released_by": user}
    if args.json:
        _common.print_json(out)
    else:
        print(
            f"released {e.qid[:12]}: record {rec.source}/{rec.id} re-verified and added (by {user})"
        )
    return 0
