"""A consistent view of the audit log while the server keeps appending, and its verification.

The head is read first and only entries and checkpoints up to it are taken, so appends that
commit meanwhile are not mistaken for tampering. Rows beyond the head are looked for *after*
reading the head again: an append moves the head in its own transaction, so a committed row
with a larger ``seq`` than the head was written behind the store's back.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow_guard.core import audit as chain
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.store.guard_store import GuardStore


@dataclass(frozen=True)
class AuditSnapshot:
    """Entries ``1..head`` in order, the head record, checkpoints (up to it, and any beyond the
    head: evidence of a cut tail), stray rows."""

    entries: list[chain.AuditEntry]
    head: tuple[int, str]
    checkpoints: list[chain.Checkpoint]
    stray_max_seq: int | None
    """Largest ``seq`` stored beyond the head record, if any (a sign of tampering)."""


def take(store: GuardStore) -> AuditSnapshot:
    """Read a consistent snapshot.

    Raises:
        StoreError: the database cannot be read.
    """
    head = store.head()
    entries = list(store.iter_audit(end_seq=head[0]))
    every = store.checkpoints()
    stored_max = store.max_seq()
    later_head = store.head()[0]
    # A checkpoint is only ever written for a head that existed, and the head only moves
    # forward: one beyond the head read *after* the checkpoints signs entries that are gone
    # (tail deleted, head rewound). Keep it, so verification reports the truncation; skip only
    # those written concurrently between the two head reads.
    checkpoints = [c for c in every if c.seq <= head[0] or c.seq > later_head]
    return AuditSnapshot(
        entries, head, checkpoints, stored_max if stored_max > later_head else None
    )


def verify(
    store: GuardStore,
    trust: TrustStore | None,
    schedule: chain.CheckpointSchedule | None = None,
) -> chain.ChainReport:
    """Verify the stored chain, its head record and its checkpoints (see ``verify_chain``).

    Raises:
        StoreError: the database cannot be read.
        PolicyError: checkpoints exist but ``trust`` is ``None``.
    """
    snap = take(store)
    report = chain.verify_chain(
        snap.entries, checkpoints=snap.checkpoints, trust=trust, head=snap.head, schedule=schedule
    )
    if report.ok and snap.stray_max_seq is not None:
        first = snap.head[0] + 1
        report.problem = chain.ChainProblem(
            "appended",
            first,
            f"entries {first}..{snap.stray_max_seq} were appended behind the store's back: the "
            f"chain head record says seq {snap.head[0]}",
        )
    return report
