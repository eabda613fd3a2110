"""Rows changed directly with SQL: verification names the entry; verifying changes nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from mlflow_guard.core import audit, keys
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.store import GuardStore, snapshot
from tests.conftest import KeyRing
from tests.store.conftest import event
from tests.store.test_store import sql

N = 10


def fill(store: GuardStore) -> list[audit.AuditEntry]:
    """Ten entries; every third one a deny."""
    return [
        store.append_audit(event(i, outcome="deny" if i % 3 == 0 else "allow"))
        for i in range(1, N + 1)
    ]


def verify(store: GuardStore, trust: TrustStore | None = None) -> audit.ChainReport:
    return snapshot.verify(store, trust)


def dump(uri: str) -> list[tuple[object, ...]]:
    return sql(uri, "SELECT * FROM guard_audit ORDER BY seq") + sql(
        uri, "SELECT * FROM guard_audit_head"
    )


def _modify(uri: str, rows: list[audit.AuditEntry]) -> None:
    sql(uri, "UPDATE guard_audit SET outcome = 'allow', reasons = '[]' WHERE seq = 6")


def _delete(uri: str, rows: list[audit.AuditEntry]) -> None:
    sql(uri, "DELETE FROM guard_audit WHERE seq = 4")


def _reorder(uri: str, rows: list[audit.AuditEntry]) -> None:
    sql(uri, "UPDATE guard_audit SET seq = -1 WHERE seq = 7")
    sql(uri, "UPDATE guard_audit SET seq = 7 WHERE seq = 8")
    sql(uri, "UPDATE guard_audit SET seq = 8 WHERE seq = -1")


def _insert(uri: str, rows: list[audit.AuditEntry]) -> None:
    # A careful attacker: makes room at seq 5, links the forged row properly, moves the head.
    sql(uri, "UPDATE guard_audit SET seq = seq + 1000 WHERE seq >= 5")
    sql(uri, "UPDATE guard_audit SET seq = seq - 999 WHERE seq >= 1000")
    forged = audit.AuditEntry.link(5, rows[3].entry_hash, event(500))
    sql(
        uri,
        "INSERT INTO guard_audit (seq, time, user_name, action, resource, outcome, reasons,"
        " request_id, prev_hash, entry_hash) VALUES (:seq, :time, :u, :a, :r, :o, '[]', :q,"
        " :p, :h)",
        seq=5,
        time=audit.format_time(forged.time),
        u=forged.user,
        a=forged.action,
        r=forged.resource,
        o=forged.outcome,
        q=forged.request_id,
        p=forged.prev_hash,
        h=audit.entry_hash(forged.prev_hash, forged.model_copy(update={"reasons": []}).event),
    )
    sql(uri, "UPDATE guard_audit_head SET seq = seq + 1")


def _truncate(uri: str, rows: list[audit.AuditEntry]) -> None:
    sql(uri, "DELETE FROM guard_audit WHERE seq >= 9")


def _bad_time(uri: str, rows: list[audit.AuditEntry]) -> None:
    sql(uri, "UPDATE guard_audit SET time = 'yesterday' WHERE seq = 2")


def _bad_outcome(uri: str, rows: list[audit.AuditEntry]) -> None:
    sql(uri, "UPDATE guard_audit SET outcome = 'maybe' WHERE seq = 3")


def _bad_prev(uri: str, rows: list[audit.AuditEntry]) -> None:
    sql(uri, "UPDATE guard_audit SET prev_hash = 'not-hex' WHERE seq = 8")


CASES: list[tuple[str, Callable[[str, list[audit.AuditEntry]], None], str, int]] = [
    ("modified", _modify, "modified", 6),
    ("deleted", _delete, "deleted", 4),
    ("reordered", _reorder, "reordered", 7),
    ("inserted", _insert, "inserted", 5),
    ("truncated", _truncate, "truncated", 9),
    ("unparsable", _bad_time, "modified", 2),
    ("invalid-outcome", _bad_outcome, "modified", 3),
    ("invalid-prev-hash", _bad_prev, "modified", 8),
]


@pytest.mark.parametrize(("name", "mutate", "kind", "seq"), CASES, ids=[c[0] for c in CASES])
def test_sql_tampering_is_named(
    store: GuardStore,
    db_uri: str,
    name: str,
    mutate: Callable[[str, list[audit.AuditEntry]], None],
    kind: str,
    seq: int,
) -> None:
    rows = fill(store)
    assert verify(store).ok
    mutate(db_uri, rows)
    before = dump(db_uri)
    report = verify(store)
    assert report.problem is not None, f"{name} went unnoticed"
    assert (report.problem.kind, report.problem.seq) == (kind, seq), report.problem.message
    assert str(seq) in report.problem.message
    assert dump(db_uri) == before, "verification must not change the database"


def test_rewriting_the_whole_chain_is_caught_by_a_signed_checkpoint(
    store: GuardStore, db_uri: str
) -> None:
    signer = keys.Signer(keys.generate())
    trust = TrustStore.single(signer.public_key, [Purpose.AUDIT])
    rows = fill(store)
    store.write_checkpoint(signer)
    assert verify(store, trust).ok
    # Change entry 3 and recompute every later hash and the head: the chain is consistent again.
    prev = rows[1].entry_hash
    for r in rows[2:]:
        ev = r.event if r.seq != 3 else r.event.model_copy(update={"outcome": "allow"})
        new = audit.AuditEntry.link(r.seq, prev, ev)
        sql(
            db_uri,
            "UPDATE guard_audit SET outcome = :o, prev_hash = :p, entry_hash = :h WHERE seq = :s",
            o=new.outcome,
            p=new.prev_hash,
            h=new.entry_hash,
            s=r.seq,
        )
        prev = new.entry_hash
    sql(db_uri, "UPDATE guard_audit_head SET entry_hash = :h", h=prev)
    assert audit.verify_chain(store.iter_audit(), head=store.head()).ok
    report = verify(store, trust)
    assert report.problem is not None
    assert report.problem.kind == "checkpoint"
    assert report.problem.seq == N


def test_forged_checkpoint_row_fails(store: GuardStore) -> None:
    signer, forger = keys.Signer(keys.generate()), keys.Signer(keys.generate())
    fill(store)
    store.write_checkpoint(forger)
    report = verify(store, TrustStore.single(signer.public_key, [Purpose.AUDIT]))
    assert report.problem is not None
    assert report.problem.kind == "checkpoint"
    assert "does not verify" in report.problem.message


def test_row_added_beyond_the_head_record_is_named(store: GuardStore, db_uri: str) -> None:
    rows = fill(store)
    forged = audit.AuditEntry.link(N + 1, rows[-1].entry_hash, event(77))
    sql(
        db_uri,
        "INSERT INTO guard_audit (seq, time, user_name, action, resource, outcome, reasons,"
        " request_id, prev_hash, entry_hash) VALUES (:s, :t, 'x', 'x', 'x', 'allow', '[]', '',"
        " :p, :h)",
        s=N + 1,
        t=audit.format_time(forged.time),
        p=forged.prev_hash,
        h=forged.entry_hash,
    )
    report = snapshot.verify(store, None)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("appended", N + 1)


def test_verifying_while_the_server_appends_raises_no_false_alarm(
    store: GuardStore, db_uri: str, keyring: KeyRing
) -> None:
    signer = keyring["audit"].signer
    trust = TrustStore.single(signer.public_key, [Purpose.AUDIT])
    writer = GuardStore(db_uri, checkpoint_signer=signer, checkpoint_every=7)
    fill(writer)
    stop = threading.Event()
    errors: list[BaseException] = []

    def append() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                writer.append_audit(event(1000 + i))
            except BaseException as e:
                errors.append(e)
                return

    th = threading.Thread(target=append)
    th.start()
    try:
        reports = [snapshot.verify(store, trust) for _ in range(15)]
    finally:
        stop.set()
        th.join()
        writer.dispose()
    assert not errors
    assert all(r.ok for r in reports), [r.problem for r in reports if r.problem]
    assert reports[-1].entries > N
