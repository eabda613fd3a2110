"""The ingestion pipeline shared by the CLI and the collector endpoint.

Per batch: size limits → per record (size, shape, source, signature, freshness) → in-batch
duplicates → skew over the authentic records (a violation quarantines the whole batch, with the
numbers) → per-source quotas → claim ids in the replay store → write the claimed records to the
destination. Claiming and writing happen in one database transaction, so a failed write leaves no
id claimed, and two ingesters of the same batch store each record exactly once.

Write order inside that transaction, and why. Every database statement (claims, batch history,
purge) runs first; then the quarantine is written; then the accepted records are appended to the
destination; then the transaction commits. With the CLI's files only the two file writes outlive
a rollback, so the order is chosen by what each failure leaves behind:

- a database statement fails: nothing was written anywhere; the ingest can simply be re-run;
- the quarantine write fails: the dataset was not touched and the claims roll back, so the
  replay store knows nothing new and no rejected record is lost (they are still in the input,
  which ingestion never modifies); re-running the same input is exactly the first run;
- the dataset append fails: the claims roll back and the append truncates what it had written,
  so the dataset holds no record the replay store does not know, and the rejected records are
  safe in the quarantine. Re-running quarantines them a second time, which is harmless: release
  claims the record in the replay store, so it can be released once;
- the commit fails after the append (or the process dies between them): the dataset holds
  records the replay store does not know. The dataset's committed size moves in the same
  transaction and the file stays locked until the transaction has ended, so the next ingest or
  release into it finds those bytes past the committed size and moves them to the quarantine
  (reason ``uncommitted``) before doing anything else (:mod:`mlflow_guard.feedback.repair`).

The reverse order (dataset, then quarantine) turns a failed quarantine write into records in
the dataset that the replay store forgot, which a re-run appends again. The append is last
because it is the only write that feeds training; the quarantine keeps bytes for review.
A failed file write is a :class:`UsageError` (exit 2) that says what was and was not stored.

Release (:meth:`Ingestor.release`) claims the record, marks the entry released, then appends;
a failed append leaves the entry marked released with its bytes still in the quarantine, never
a record in the dataset that the replay store does not know.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlflow_guard.core import feedback_records as fr
from mlflow_guard.core import skew
from mlflow_guard.core.errors import UsageError, VerificationError
from mlflow_guard.core.feedback import Reason, RecordChecker, Rejection, SourceKeys, freshness
from mlflow_guard.core.policy import Policy
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.feedback.quarantine import Entry
from mlflow_guard.feedback.repair import Tail
from mlflow_guard.feedback.store import Claim, FeedbackStore, Tx

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    """A record that passed every check, with its exact bytes."""

    line: int
    record: fr.Record
    raw: bytes


TailSink = Callable[[Tx, Tail], None]
"""Quarantines the uncommitted end of a dataset file, inside the transaction given."""


class Destination(Protocol):
    """Where accepted records go (a JSONL file for the CLI, a table for the server)."""

    def held(
        self, store: FeedbackStore, batch_id: str, now: float, quarantine: TailSink
    ) -> AbstractContextManager[None]:
        """Held around a batch (or release), from before its transaction until after it ends.

        A destination outside the database locks itself here and first repairs what an earlier
        failed commit left in it, handing those records to ``quarantine``.
        """

    def write(self, tx: Tx, batch_id: str, records: list[Accepted], now: float) -> None:
        """Store ``records`` (only inside :meth:`held`); raising rolls back the claim."""


class QuarantineSink(Protocol):
    """Where quarantined records go."""

    def write(self, tx: Tx, entries: list[Entry]) -> None:
        """Store ``entries``."""


@dataclass
class BatchResult:
    """What happened to one batch."""

    batch_id: str
    accepted: list[Accepted] = field(default_factory=list)
    quarantined: list[Entry] = field(default_factory=list)
    skew: skew.SkewReport | None = None
    uncommitted: list[Entry] = field(default_factory=list)
    """Lines an earlier failed commit left in the dataset, moved to quarantine first."""

    def by_source(self) -> dict[str, list[str]]:
        """Accepted record ids per source."""
        out: dict[str, list[str]] = {}
        for a in self.accepted:
            out.setdefault(a.record.source, []).append(a.record.id)
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (quarantined entries without their raw bytes)."""
        return {
            "batch_id": self.batch_id,
            "accepted": len(self.accepted),
            "quarantined": len(self.quarantined),
            "accepted_by_source": {s: len(v) for s, v in self.by_source().items()},
            "rejections": [
                {"line": e.line, "qid": e.qid, "reason": e.reason, "message": e.message}
                for e in self.quarantined
            ],
            "skew": self.skew.to_json() if self.skew else None,
            "uncommitted": [
                {"offset": e.detail["offset"], "qid": e.qid, "message": e.message}
                for e in self.uncommitted
            ],
        }


def _os_error(e: OSError) -> str:
    """``PATH: reason`` of a failed file operation."""
    reason = e.strerror or str(e)
    return f"{e.filename}: {reason}" if e.filename else reason


def split_lines(data: bytes) -> list[tuple[int, bytes]]:
    """JSONL bytes → ``(line number, raw line)``, blank lines skipped, newline removed."""
    return [(n, line) for n, line in enumerate(data.split(b"\n"), 1) if not fr.is_blank(line)]


class Ingestor:
    """Runs the pipeline against one policy, store, destination and quarantine.

    Args:
        policy: the loaded policy (its ``feedback`` section and keys).
        store: the guard database.
        destination: where accepted records go.
        quarantine: where rejected records go.
        trust: trust store (built from ``policy`` if not given).
        clock: Unix time source (tests pass a fixed one).
    """

    def __init__(
        self,
        policy: Policy,
        store: FeedbackStore,
        destination: Destination,
        quarantine: QuarantineSink,
        *,
        trust: TrustStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.fp = policy.feedback
        self.store = store
        self.destination = destination
        self.quarantine = quarantine
        self.trust = trust if trust is not None else TrustStore.from_policy(policy)
        self.clock = clock

    def checker(self) -> RecordChecker:
        """A record checker with sources resolved now (trust, expiry, HMAC secrets)."""
        return RecordChecker(self.fp, SourceKeys.from_policy(self.policy, trust=self.trust))

    def oversized(self, lines: list[tuple[int, bytes]]) -> str | None:
        """Why the batch is over the policy's limits, or ``None``."""
        size = sum(len(raw) + 1 for _, raw in lines)
        if len(lines) > self.fp.max_batch_records:
            return f"batch has {len(lines)} records; the limit is {self.fp.max_batch_records}"
        if size > self.fp.max_batch_bytes:
            return f"batch is {size} bytes; the limit is {self.fp.max_batch_bytes}"
        return None

    def ingest(self, data: bytes) -> BatchResult:
        """Ingest a JSONL batch."""
        return self.ingest_lines(split_lines(data))

    def ingest_lines(self, lines: list[tuple[int, bytes]]) -> BatchResult:
        """Ingest ``(line number, raw bytes)`` pairs as one batch."""
        now = self.clock()
        result = BatchResult(uuid.uuid4().hex)
        sink = self._tail_sink(result.batch_id, now, result.uncommitted)
        with self.destination.held(self.store, result.batch_id, now, sink):
            self._ingest_held(lines, now, result)
        return result

    def _tail_sink(self, batch_id: str, now: float, into: list[Entry]) -> TailSink:
        """Quarantine each uncommitted line of a dataset, byte-for-byte, reason ``uncommitted``.

        ``received_at`` is now: when the line first arrived is not known (its commit failed),
        so a release judges its freshness at the repair, never earlier.
        """

        def sink(tx: Tx, tail: Tail) -> None:
            entries = [
                Entry.new(
                    batch_id,
                    u.line,
                    Reason.UNCOMMITTED.value,
                    f"found in {tail.dataset} at byte {u.offset}, past its committed size "
                    f"{tail.committed_size}: appended by a batch whose commit failed (or by "
                    "hand); moved out of the dataset",
                    u.raw,
                    now,
                    {
                        "dataset": tail.dataset,
                        "offset": u.offset,
                        "committed_size": tail.committed_size,
                    },
                )
                for u in tail.lines
            ]
            try:
                self.quarantine.write(tx, entries)
            except OSError as e:
                raise UsageError(
                    f"cannot write the quarantine {_os_error(e)}; nothing was ingested",
                    details=[
                        f"{tail.path} holds {tail.size - tail.committed_size} uncommitted byte(s) "
                        "past its committed size; they stay there until they are quarantined",
                    ],
                    hint="fix the quarantine path (a file, writable, on a disk with free space) "
                    "and run the same command again",
                ) from e
            _log.warning(
                "%s: moved %d uncommitted line(s) (bytes %d..%d, left by a failed commit) to "
                "the quarantine, reason 'uncommitted'",
                tail.path,
                len(entries),
                tail.committed_size,
                tail.size,
            )
            into.extend(entries)

        return sink

    def _ingest_held(self, lines: list[tuple[int, bytes]], now: float, result: BatchResult) -> None:
        rejected: list[Entry] = result.quarantined

        def reject(
            line: int, raw: bytes, why: Rejection, detail: dict[str, Any] | None = None
        ) -> None:
            rejected.append(
                Entry.new(result.batch_id, line, why.reason.value, why.message, raw, now, detail)
            )

        too_big = self.oversized(lines)
        if too_big:
            for n, raw in lines:
                reject(n, raw, Rejection(Reason.BATCH_TOO_LARGE, too_big))
            with self.store.transaction() as tx:
                self._write_quarantine(tx, rejected)
            return

        checker = self.checker()
        candidates: list[Accepted] = []
        seen_here: set[tuple[str, str]] = set()
        for n, raw in lines:
            out = checker.check(raw, now)
            if isinstance(out, Rejection):
                reject(n, raw, out)
            elif (out.source, out.id) in seen_here:
                reject(n, raw, Rejection(Reason.REPLAY, f"id {out.id!r} repeats within the batch"))
            else:
                seen_here.add((out.source, out.id))
                candidates.append(Accepted(n, out, raw))

        with self.store.transaction() as tx:
            # before anything is read: the quota count must see every earlier batch of the source
            tx.lock_sources(
                a.record.source
                for a in candidates
                if self.fp.quota_for(a.record.source) is not None
            )
            report = self._assess(tx, candidates)
            result.skew = report
            if not report.ok:
                detail = report.to_json()
                why = Rejection(
                    Reason.SKEW, "batch quarantined whole: " + "; ".join(report.violations)
                )
                for a in candidates:
                    reject(a.line, a.raw, why, detail)
                candidates = []
            candidates = self._within_quota(tx, candidates, now, reject)
            claims = [Claim(a.record.source, a.record.id, a.record.timestamp) for a in candidates]
            claimed = tx.claim(claims, result.batch_id, now)
            for a in candidates:
                if (a.record.source, a.record.id) in claimed:
                    result.accepted.append(a)
                else:
                    reject(
                        a.line,
                        a.raw,
                        Rejection(Reason.REPLAY, f"id {a.record.id!r} was seen before"),
                    )
            rejected.sort(key=lambda e: e.line)
            per_source: dict[str, Counter[str]] = {}
            for a in result.accepted:
                label = skew.label_of(a.record.payload, self.fp.skew.label_field)
                c = per_source.setdefault(a.record.source, Counter())
                if label is not None:
                    c[label] += 1
            tx.add_batch(
                result.batch_id,
                per_source,
                dict(Counter(a.record.source for a in result.accepted)),
                now,
            )
            tx.purge(now - self._retention())
            # the order is argued in the module docstring: quarantine, then dataset, then commit
            self._write_quarantine(tx, rejected)
            self._write_accepted(tx, result, now)

    def _write_quarantine(self, tx: Tx, rejected: list[Entry]) -> None:
        try:
            self.quarantine.write(tx, rejected)
        except OSError as e:
            raise UsageError(
                f"cannot write the quarantine {_os_error(e)}; nothing was ingested",
                details=[
                    "the dataset and the replay store are unchanged; the input was not modified"
                ],
                hint="fix the quarantine path (a file, writable, on a disk with free space) and "
                "run the same ingest again",
            ) from e

    def _write_accepted(self, tx: Tx, result: BatchResult, now: float) -> None:
        try:
            self.destination.write(tx, result.batch_id, result.accepted, now)
        except OSError as e:
            raise UsageError(
                f"cannot append to the dataset {_os_error(e)}; no record was accepted",
                details=[
                    "the dataset and the replay store are unchanged; the input was not modified",
                    f"{len(result.quarantined)} rejected record(s) are in the quarantine",
                ],
                hint="fix the dataset path (a file, writable, on a disk with free space) and "
                "run the same ingest again (its rejected records are quarantined once more)",
            ) from e

    def _retention(self) -> float:
        periods = [q.per for q in [self.fp.quota, *self.fp.quotas.values()] if q is not None]
        return max([self.fp.effective_replay_window, *periods]).total_seconds()

    def _assess(self, tx: Tx, candidates: list[Accepted]) -> skew.SkewReport:
        sp = self.fp.skew
        items = [
            (a.record.source, skew.label_of(a.record.payload, sp.label_field)) for a in candidates
        ]
        baseline: dict[str, float] | None = dict(sp.baseline) if sp.baseline else None
        if baseline is None and sp.max_label_distance is not None:
            hist = tx.label_history(
                sp.history_batches * max(1, len(self.fp.sources) + len(self.fp.hmac_sources))
            )
            baseline = dict(hist) if sum(hist.values()) >= sp.min_records else None
        history: dict[str, list[int]] = {}
        if sp.max_volume_ratio is not None:
            for s in {src for src, _ in items}:
                history[s] = tx.history(s, sp.history_batches)
        return skew.assess(items, sp, baseline=baseline, history=history)

    def _within_quota(
        self,
        tx: Tx,
        candidates: list[Accepted],
        now: float,
        reject: Callable[[int, bytes, Rejection], None],
    ) -> list[Accepted]:
        out: list[Accepted] = []
        left: dict[str, int] = {}
        for a in candidates:
            src = a.record.source
            quota = self.fp.quota_for(src)
            if quota is None:
                out.append(a)
                continue
            if src not in left:
                left[src] = quota.records - tx.count_since(src, now - quota.per.total_seconds())
            if left[src] > 0:
                left[src] -= 1
                out.append(a)
            else:
                reject(
                    a.line,
                    a.raw,
                    Rejection(
                        Reason.QUOTA,
                        f"source {src!r} is over its quota of {quota.records} records per "
                        f"{int(quota.per.total_seconds())}s",
                    ),
                )
        return out

    def release(self, entry: Entry, user: str, mark: Callable[[Tx], bool]) -> fr.Record:
        """Re-verify a quarantined record and, if it passes, write it to the destination.

        Authenticity is checked now; freshness is judged at the instant the record arrived
        (``received_at``), so a record that was stale on arrival stays quarantined. Skew and quota
        are batch- and time-dependent and are the admin's decision when releasing.

        Raises:
            VerificationError: the record fails re-verification or was seen already.
        """
        now = self.clock()
        out = self.checker().check(entry.raw, now, check_freshness=False)
        if not isinstance(out, Rejection):
            out = freshness(out.timestamp, entry.received_at, self.fp) or out
        if isinstance(out, Rejection):
            raise VerificationError(
                f"quarantine entry {entry.qid} fails re-verification: {out.reason.value}",
                details=[out.message],
                hint="this record cannot be released; keep it quarantined for investigation",
            )
        rec = out
        repaired: list[Entry] = []
        sink = self._tail_sink(uuid.uuid4().hex, now, repaired)
        with self.destination.held(self.store, entry.batch_id, now, sink):
            self._release_held(entry, rec, mark, now)
        return rec

    def _release_held(
        self, entry: Entry, rec: fr.Record, mark: Callable[[Tx], bool], now: float
    ) -> None:
        with self.store.transaction() as tx:
            if not tx.claim([Claim(rec.source, rec.id, rec.timestamp)], entry.batch_id, now):
                raise VerificationError(
                    f"quarantine entry {entry.qid}: record {rec.source}/{rec.id} was seen before",
                    hint="it is a replay of a record already in the dataset; keep it quarantined",
                )
            if not mark(tx):
                raise VerificationError(f"quarantine entry {entry.qid} is no longer quarantined")
            try:
                self.destination.write(
                    tx, entry.batch_id, [Accepted(entry.line, rec, entry.raw)], now
                )
            except OSError as e:
                raise UsageError(
                    f"cannot append to the dataset {_os_error(e)}; the record was not released",
                    details=["the dataset and the replay store are unchanged"],
                    hint="fix the dataset path (a file, writable, on a disk with free space) and "
                    "release the entry again",
                ) from e
