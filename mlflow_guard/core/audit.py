"""Tamper-evident audit log: entries, the hash chain, signed checkpoints and chain verification.

Pure logic (no I/O): the store (:mod:`mlflow_guard.store`) persists what is defined here.

Format of one link::

    canonical(entry) = RFC 8785 (JCS) of {time, user, action, resource, outcome, reasons,
                                          request_id}
    entry_hash       = hex(sha256(bytes.fromhex(prev_hash) || canonical(entry)))

The first entry links to :data:`GENESIS_HASH` (64 zeros). ``seq`` is not part of the hashed
bytes: an entry's position is bound by the chain of ``prev_hash`` links from the genesis, and
verification checks that ``seq`` equals that position (1, 2, 3, … without gaps).

A chain alone is unkeyed: anyone able to write the table could recompute it from the start.
Checkpoints close that gap: the server periodically signs the current head (``seq``,
``entry_hash``) with its ``audit`` key as an in-toto Statement v1 in a DSSE envelope
(predicate type :data:`CHECKPOINT_PREDICATE_TYPE`); verification checks each checkpoint's
signature and that the chain still holds the signed hash at the signed position.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlflow_guard.core import dsse, intoto, keys
from mlflow_guard.core.errors import GuardError, PolicyError, SignatureInvalid
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustStore

GENESIS_HASH = "0" * 64
CHECKPOINT_PREDICATE_TYPE = "https://mlflow-guard.dev/audit-checkpoint/v1"
CHECKPOINT_SUBJECT = "mlflow-guard-audit-log"

Outcome = Literal["allow", "deny"]


def format_time(t: datetime) -> str:
    """UTC ISO 8601 with microseconds and a ``Z`` (the form that is hashed and stored)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime:
    """Inverse of :func:`format_time` (any ISO 8601 accepted; naive means UTC)."""
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class AuditEvent(BaseModel):
    """One guard decision to record: who did what to which resource, and the outcome."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str
    action: str
    resource: str
    outcome: Outcome
    reasons: list[str] = Field(default_factory=list)
    request_id: str = ""
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("time")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        # Round-trip through the stored form so the value hashed equals the value read back.
        return parse_time(format_time(v))

    def canonical(self) -> bytes:
        """RFC 8785 canonical JSON of the hashed fields."""
        import rfc8785

        doc = {
            "time": format_time(self.time),
            "user": self.user,
            "action": self.action,
            "resource": self.resource,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "request_id": self.request_id,
        }
        out: bytes = rfc8785.dumps(doc)
        return out


def entry_hash(prev_hash: str, event: AuditEvent, canonical: bytes | None = None) -> str:
    """``hex(sha256(bytes.fromhex(prev_hash) || canonical(event)))`` (``canonical`` if given)."""
    body = event.canonical() if canonical is None else canonical
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()


class AuditEntry(AuditEvent):
    """A stored event: its position in the chain and the two hashes that link it."""

    seq: int
    prev_hash: str
    entry_hash: str

    @property
    def event(self) -> AuditEvent:
        """The event part (what was hashed)."""
        return AuditEvent.model_validate(self.model_dump(include=set(AuditEvent.model_fields)))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (time in the hashed string form)."""
        d = self.model_dump()
        d["time"] = format_time(self.time)
        return d

    @classmethod
    def link(
        cls, seq: int, prev_hash: str, event: AuditEvent, canonical: bytes | None = None
    ) -> AuditEntry:
        """Build the entry that appends ``event`` after a head with hash ``prev_hash``."""
        h = entry_hash(prev_hash, event, canonical)
        return cls(**event.model_dump(), seq=seq, prev_hash=prev_hash, entry_hash=h)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of the chain head: after ``seq`` entries the head was ``entry_hash``."""

    id: int
    seq: int
    entry_hash: str
    created_at: datetime
    envelope: dict[str, Any]


def checkpoint_statement(seq: int, head_hash: str, at: datetime) -> intoto.Statement:
    """The in-toto Statement a checkpoint signs."""
    return intoto.Statement(
        subject=[intoto.Subject(name=CHECKPOINT_SUBJECT, digest={"sha256": head_hash})],
        predicate_type=CHECKPOINT_PREDICATE_TYPE,
        predicate={"seq": seq, "entry_hash": head_hash, "time": format_time(at)},
    )


def sign_checkpoint(seq: int, head_hash: str, signer: keys.Signer, at: datetime) -> dsse.Envelope:
    """Sign the head (``seq``, ``head_hash``) with the ``audit`` key."""
    return intoto.sign_statement(checkpoint_statement(seq, head_hash, at), signer)


def verify_checkpoint(envelope: dict[str, Any], trust: TrustStore) -> tuple[int, str]:
    """Verify a checkpoint envelope with a key trusted for ``audit``; return (seq, head hash).

    Raises:
        SignatureInvalid: malformed, forged or of another predicate type.
        KeyNotTrusted: signed by a key not trusted for ``audit``.
    """
    st, _key = intoto.verify_attestation(
        envelope, trust, Purpose.AUDIT, CHECKPOINT_PREDICATE_TYPE, source="audit checkpoint"
    )
    seq, head = st.predicate.get("seq"), st.predicate.get("entry_hash")
    if (
        not isinstance(seq, int)
        or not isinstance(head, str)
        or st.subject[0].digest.get("sha256") != head
    ):
        raise SignatureInvalid(
            "audit checkpoint statement is malformed",
            details=["expected predicate {seq: int, entry_hash: str} matching subject sha256"],
        )
    return seq, head


Problem = Literal[
    "modified", "deleted", "inserted", "reordered",
    "replaced", "truncated", "appended", "checkpoint",
]  # fmt: skip
"""What went wrong: an entry changed, missing, added, out of order; the tail cut or extended
behind the store's back; a signed checkpoint that fails or no longer matches."""


@dataclass(frozen=True)
class ChainProblem:
    """The first thing found wrong with a chain, naming the entry."""

    kind: Problem
    seq: int
    message: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class ChainReport:
    """Outcome of :func:`verify_chain`."""

    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    checkpoints_verified: int = 0
    problem: ChainProblem | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``ok`` first, then every field; ``problem`` may be ``None``)."""
        return {"ok": self.ok, **asdict(self)}


def _classify_break(
    row: AuditEntry, rows: list[AuditEntry], pos: int, by_hash: dict[str, int]
) -> ChainProblem:
    """Explain why ``row`` (at 0-based position ``pos``) does not link to the row before it."""
    expected_seq = pos + 1
    prev = rows[pos - 1] if pos else None
    prev_hash = prev.entry_hash if prev else GENESIS_HASH
    target = by_hash.get(row.prev_hash)  # position (1-based) of the entry it links to
    if row.prev_hash == GENESIS_HASH:
        target = 0
    if target is not None and target > expected_seq - 1:
        return ChainProblem(
            "reordered",
            row.seq,
            f"entry {row.seq} is out of order: it was written after the entry now at seq "
            f"{target}, not after seq {expected_seq - 1}",
        )
    if target is not None and target < expected_seq - 1:
        bad = rows[target].seq
        return ChainProblem(
            "inserted",
            bad,
            f"entry {bad} was inserted: entry {row.seq} links to the entry at position "
            f"{target} (hash {row.prev_hash[:16]}…), skipping what is stored between them",
        )
    if row.seq > expected_seq:
        missing = (
            f"{expected_seq}" if row.seq == expected_seq + 1 else f"{expected_seq}..{row.seq - 1}"
        )
        return ChainProblem(
            "deleted", expected_seq, f"entry {missing} deleted: seq jumps to {row.seq}"
        )
    before = prev.seq if prev else 0
    return ChainProblem(
        "replaced",
        before,
        f"entry {before} was replaced (or entries after it deleted and renumbered): entry "
        f"{row.seq} links to hash {row.prev_hash[:16]}…, which is not in the log, while entry "
        f"{before} hashes to {prev_hash[:16]}…",
    )


def verify_chain(
    entries: Iterable[AuditEntry],
    *,
    checkpoints: Iterable[Checkpoint] = (),
    trust: TrustStore | None = None,
    head: tuple[int, str] | None = None,
    schedule: CheckpointSchedule | None = None,
) -> ChainReport:
    """Verify a chain read in ``seq`` order; report the first bad entry by name.

    Args:
        entries: every stored entry in ascending ``seq`` order (as stored; not re-sorted).
        checkpoints: signed checkpoints; each is verified with ``trust`` and matched to the chain.
        trust: keys trusted for ``audit``; required when ``checkpoints`` is not empty.
        head: the chain head (seq, hash) recorded by the store, to detect truncation.
        schedule: how often the policy has the server sign checkpoints; checkpoints missing
            from it are a problem (deleted to hide a rewrite), not a note.

    Raises:
        PolicyError: checkpoints were given without a trust store (nothing to verify them with).
    """
    rows = list(entries)
    cps = list(checkpoints)
    if cps and trust is None:
        raise PolicyError(
            f"{len(cps)} signed checkpoint(s) present but no audit key to verify them",
            hint="pass --public-key AUDIT.pub or --policy with a key of purpose 'audit'",
        )
    report = ChainReport(entries=len(rows))
    by_hash = {r.entry_hash: i + 1 for i, r in enumerate(rows)}  # hash -> position
    prev: AuditEntry | None = None
    for i, row in enumerate(rows):
        expected_seq = i + 1
        recomputed = _recompute(row)
        if recomputed != row.entry_hash:
            nxt = rows[i + 1] if i + 1 < len(rows) else None
            if nxt is not None and nxt.prev_hash == (prev.entry_hash if prev else GENESIS_HASH):
                report.problem = ChainProblem(
                    "inserted",
                    row.seq,
                    f"entry {row.seq} was inserted: its hashes do not verify and entry "
                    f"{nxt.seq} links past it",
                )
                return report
            report.problem = ChainProblem(
                "modified",
                row.seq,
                f"entry {row.seq} was modified: its content hashes to "
                f"{recomputed[:16] or '(invalid prev_hash)'}…, stored entry_hash is "
                f"{row.entry_hash[:16]}…",
            )
            return report
        prev_hash = prev.entry_hash if prev else GENESIS_HASH
        if row.prev_hash != prev_hash:
            report.problem = _classify_break(row, rows, i, by_hash)
            return report
        if row.seq != expected_seq:
            kind: Problem = "deleted" if row.seq > expected_seq else "inserted"
            report.problem = ChainProblem(
                kind,
                row.seq,
                f"entry at position {expected_seq} carries seq {row.seq}: the sequence was "
                "renumbered",
            )
            return report
        prev = row
    report.head_seq = prev.seq if prev else 0
    report.head_hash = prev.entry_hash if prev else GENESIS_HASH
    if head is not None and head != (report.head_seq, report.head_hash):
        hs, hh = head
        if hs > report.head_seq:
            report.problem = ChainProblem(
                "truncated",
                report.head_seq + 1,
                f"entries {report.head_seq + 1}..{hs} deleted from the end: the chain head "
                f"record says seq {hs} ({hh[:16]}…) but the log ends at seq {report.head_seq}",
            )
        elif hs < report.head_seq:
            report.problem = ChainProblem(
                "appended",
                hs + 1,
                f"entry {hs + 1} was appended behind the store's back: the chain head record "
                f"says seq {hs} but the log ends at seq {report.head_seq}",
            )
        else:
            report.problem = ChainProblem(
                "replaced",
                hs,
                f"entry {hs} was replaced: the chain head record says {hh[:16]}…, the log "
                f"ends with {report.head_hash[:16]}…",
            )
        return report
    for cp in cps:
        problem = _check_checkpoint(cp, rows, trust)  # type: ignore[arg-type]  # checked above
        if problem:
            report.problem = problem
            return report
        report.checkpoints_verified += 1
    if schedule is not None:
        report.problem = schedule.missing(report.head_seq, [cp.seq for cp in cps])
        if report.problem is not None:
            return report
    if not cps:
        report.notes.append(
            "no signed checkpoint: the chain is internally consistent, but a writer able to "
            "recompute it from the start would go unnoticed"
        )
    return report


@dataclass(frozen=True)
class CheckpointSchedule:
    """When the server signs checkpoints (the policy's ``storage`` section with an audit key).

    The server signs one after every entry whose ``seq`` is a multiple of ``every`` and, with an
    ``interval``, after the first entry and then at least that often while entries arrive. So a
    log with entries and no checkpoint, or one whose last checkpoint lies far behind the head,
    lost checkpoints: deleting them is what hides a chain recomputed after them.

    Attributes:
        every: entries between count-based checkpoints (0: none by count).
        interval: whether time-based checkpoints are on (the first entry then gets one).
        slack: entries tolerated beyond ``every`` (appends that raced the signing).
    """

    every: int
    interval: bool
    slack: int = 64

    def missing(self, head_seq: int, checkpoint_seqs: list[int]) -> ChainProblem | None:
        """The problem when checkpoints this schedule must have written are not there."""
        hint = (
            "checkpoints were deleted (a rewritten chain would then verify), or the audit key "
            "was configured only recently: if so, sign one now with `mlflow-guard audit "
            "checkpoint` and verify again"
        )
        if not checkpoint_seqs:
            if head_seq and (self.interval or (self.every and head_seq >= self.every)):
                return ChainProblem(
                    "checkpoint",
                    1,
                    f"no signed checkpoint in a log of {head_seq} entries, although the policy "
                    f"has the server sign them (storage.audit_key): {hint}",
                )
            return None
        last = max(checkpoint_seqs)
        if self.every and head_seq - last > 2 * self.every + self.slack:
            return ChainProblem(
                "checkpoint",
                last + 1,
                f"no signed checkpoint after seq {last}, {head_seq - last} entries before the "
                f"head, although the policy signs one every {self.every} entries: {hint}",
            )
        return None


def _check_checkpoint(
    cp: Checkpoint, rows: list[AuditEntry], trust: TrustStore
) -> ChainProblem | None:
    try:
        seq, head = verify_checkpoint(cp.envelope, trust)
    except GuardError as e:
        return ChainProblem(
            "checkpoint", cp.seq, f"checkpoint {cp.id} (seq {cp.seq}) does not verify: {e.summary}"
        )
    if (seq, head) != (cp.seq, cp.entry_hash):
        return ChainProblem(
            "checkpoint",
            cp.seq,
            f"checkpoint {cp.id}: stored seq/hash ({cp.seq}, {cp.entry_hash[:16]}…) differ "
            f"from the signed ones ({seq}, {head[:16]}…)",
        )
    if seq < 1 or seq > len(rows):
        return ChainProblem(
            "truncated",
            seq,
            f"checkpoint {cp.id} signed entry {seq}, but the log holds only {len(rows)} entries: "
            "entries were deleted from the end",
        )
    if rows[seq - 1].entry_hash != head:
        return ChainProblem(
            "checkpoint",
            seq,
            f"entry {seq} does not match signed checkpoint {cp.id}: the chain up to it was "
            f"rewritten (signed {head[:16]}…, stored {rows[seq - 1].entry_hash[:16]}…)",
        )
    return None


def _recompute(row: AuditEntry) -> str:
    """The row's hash from its content, or ``""`` when the content is not even well-formed."""
    try:
        return entry_hash(row.prev_hash, row.event)
    except ValueError:  # non-hex prev_hash; invalid outcome or field (pydantic ValidationError)
        return ""
