"""Pure hash-chain logic: canonical bytes, links, checkpoints, and naming the first bad entry."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_guard.core import audit, keys
from mlflow_guard.core.errors import PolicyError
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore
from tests.store.conftest import event

T0 = datetime(2026, 11, 28, 17, 0, 0, 123456, tzinfo=UTC)


def build(n: int) -> list[audit.AuditEntry]:
    """A valid chain of ``n`` entries."""
    out: list[audit.AuditEntry] = []
    prev = audit.GENESIS_HASH
    for i in range(1, n + 1):
        e = audit.AuditEntry.link(i, prev, event(i))
        out.append(e)
        prev = e.entry_hash
    return out


def renumber(rows: list[audit.AuditEntry]) -> list[audit.AuditEntry]:
    """Rows with seq rewritten to 1..n (what an attacker does after moving rows)."""
    return [r.model_copy(update={"seq": i}) for i, r in enumerate(rows, 1)]


def test_canonical_form_is_rfc8785_and_hash_links_to_previous() -> None:
    ev = audit.AuditEvent(
        user="alice",
        action="read",
        resource="experiment:1",
        outcome="deny",
        reasons=["no rule"],
        request_id="r1",
        time=T0,
    )
    expected = rfc8785.dumps(
        {
            "action": "read",
            "outcome": "deny",
            "reasons": ["no rule"],
            "request_id": "r1",
            "resource": "experiment:1",
            "time": "2026-11-28T17:00:00.123456Z",
            "user": "alice",
        }
    )
    assert ev.canonical() == expected
    assert expected.startswith(b'{"action":"read","outcome":"deny"')
    first = audit.AuditEntry.link(1, audit.GENESIS_HASH, ev)
    assert first.entry_hash == hashlib.sha256(bytes(32) + expected).hexdigest()
    second = audit.AuditEntry.link(2, first.entry_hash, ev)
    assert (
        second.entry_hash == hashlib.sha256(bytes.fromhex(first.entry_hash) + expected).hexdigest()
    )
    assert second.entry_hash != first.entry_hash


def test_naive_and_offset_times_normalise_to_the_same_utc_instant() -> None:
    base = event(1)
    naive = base.model_copy(update={"time": None})
    a = audit.AuditEvent(**{**base.model_dump(), "time": datetime(2026, 1, 1, 12)})
    b = audit.AuditEvent(**{**base.model_dump(), "time": "2026-01-01T13:00:00+01:00"})
    assert a.canonical() == b.canonical()
    assert naive is not None


def test_valid_chain_verifies() -> None:
    rows = build(20)
    r = audit.verify_chain(rows, head=(20, rows[-1].entry_hash))
    assert r.ok
    assert r.entries == 20
    assert r.head_seq == 20
    assert r.notes, "an unsigned chain must say it has no checkpoint"


def test_empty_chain_verifies_with_genesis_head() -> None:
    r = audit.verify_chain([], head=(0, audit.GENESIS_HASH))
    assert r.ok
    assert r.head_hash == audit.GENESIS_HASH


def _kind(rows: list[audit.AuditEntry], **kw: object) -> tuple[str, int]:
    r = audit.verify_chain(rows, **kw)  # type: ignore[arg-type]
    assert r.problem is not None, "tampering went unnoticed"
    return r.problem.kind, r.problem.seq


def test_modified_entry_is_named() -> None:
    rows = build(10)
    rows[4] = rows[4].model_copy(update={"outcome": "allow", "reasons": ["forged"]})
    assert _kind(rows) == ("modified", 5)


def test_deleted_entry_is_named() -> None:
    rows = build(10)
    del rows[6]
    assert _kind(rows) == ("deleted", 7)


def test_deleted_first_entry_is_named() -> None:
    rows = build(5)
    del rows[0]
    assert _kind(rows) == ("deleted", 1)


def test_deleted_and_renumbered_is_detected() -> None:
    rows = build(10)
    del rows[3]
    kind, seq = _kind(renumber(rows))
    assert (kind, seq) == ("replaced", 3)


def test_inserted_consistent_entry_is_named() -> None:
    rows = build(10)
    forged = audit.AuditEntry.link(4, rows[2].entry_hash, event(99))
    tampered = renumber([*rows[:3], forged, *rows[3:]])
    assert _kind(tampered) == ("inserted", 4)


def test_inserted_garbage_entry_is_named() -> None:
    rows = build(6)
    forged = event(99)
    junk = audit.AuditEntry(**forged.model_dump(), seq=4, prev_hash="ab" * 32, entry_hash="cd" * 32)
    tampered = renumber([*rows[:3], junk, *rows[3:]])
    assert _kind(tampered) == ("inserted", 4)


def test_reordered_entries_are_named() -> None:
    rows = build(10)
    rows[5], rows[6] = rows[6], rows[5]
    assert _kind(renumber(rows)) == ("reordered", 6)


def test_truncated_tail_is_caught_by_head_record() -> None:
    rows = build(10)
    assert _kind(rows[:8], head=(10, rows[-1].entry_hash)) == ("truncated", 9)


def test_entry_appended_behind_the_stores_back_is_caught_by_head_record() -> None:
    rows = build(10)
    assert _kind(rows, head=(9, rows[8].entry_hash)) == ("appended", 10)


def _trust(signer: keys.Signer, purpose: Purpose = Purpose.AUDIT) -> TrustStore:
    return TrustStore([TrustedKey("audit", signer.public_key, frozenset({purpose}))])


def _cp(rows: list[audit.AuditEntry], seq: int, signer: keys.Signer) -> audit.Checkpoint:
    env = audit.sign_checkpoint(seq, rows[seq - 1].entry_hash, signer, T0).to_json()
    return audit.Checkpoint(1, seq, rows[seq - 1].entry_hash, T0, env)


def test_checkpoint_verifies_and_catches_a_fully_recomputed_chain() -> None:
    signer = keys.Signer(keys.generate())
    rows = build(10)
    cp = _cp(rows, 8, signer)
    ok = audit.verify_chain(rows, checkpoints=[cp], trust=_trust(signer))
    assert ok.ok
    assert ok.checkpoints_verified == 1
    assert not ok.notes
    # Attacker rewrites entry 3 and recomputes every later link: internally consistent again.
    forged = list(rows)
    prev = rows[1].entry_hash
    for i in range(2, 10):
        ev = forged[i].event
        if i == 2:
            ev = ev.model_copy(update={"outcome": "deny", "reasons": ["hidden"]})
        forged[i] = audit.AuditEntry.link(i + 1, prev, ev)
        prev = forged[i].entry_hash
    assert audit.verify_chain(forged).ok
    r = audit.verify_chain(forged, checkpoints=[cp], trust=_trust(signer))
    assert r.problem is not None
    assert r.problem.kind == "checkpoint"
    assert r.problem.seq == 8


def test_checkpoint_beyond_the_end_reports_truncation() -> None:
    signer = keys.Signer(keys.generate())
    rows = build(10)
    cp = _cp(rows, 10, signer)
    assert _kind(rows[:7], checkpoints=[cp], trust=_trust(signer)) == ("truncated", 10)


def test_forged_checkpoint_fails() -> None:
    signer, forger = keys.Signer(keys.generate()), keys.Signer(keys.generate())
    rows = build(5)
    cp = _cp(rows, 5, forger)
    r = audit.verify_chain(rows, checkpoints=[cp], trust=_trust(signer))
    assert r.problem is not None
    assert r.problem.kind == "checkpoint"
    assert "does not verify" in r.problem.message


def test_checkpoint_by_key_of_other_purpose_fails() -> None:
    signer = keys.Signer(keys.generate())
    rows = build(5)
    r = audit.verify_chain(
        rows, checkpoints=[_cp(rows, 5, signer)], trust=_trust(signer, Purpose.MODEL)
    )
    assert r.problem is not None
    assert r.problem.kind == "checkpoint"
    assert "not for 'audit'" in r.problem.message


def test_checkpoint_with_edited_columns_fails() -> None:
    signer = keys.Signer(keys.generate())
    rows = build(5)
    cp = _cp(rows, 5, signer)
    moved = audit.Checkpoint(cp.id, 4, rows[3].entry_hash, cp.created_at, cp.envelope)
    r = audit.verify_chain(rows, checkpoints=[moved], trust=_trust(signer))
    assert r.problem is not None
    assert r.problem.kind == "checkpoint"


def test_checkpoints_without_a_key_are_a_configuration_error() -> None:
    signer = keys.Signer(keys.generate())
    rows = build(3)
    with pytest.raises(PolicyError, match="no audit key"):
        audit.verify_chain(rows, checkpoints=[_cp(rows, 3, signer)])


MUTATIONS = st.sampled_from(["modify", "delete", "swap", "insert"])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=3, max_value=25), data=st.data(), how=MUTATIONS)
def test_any_single_tampering_is_detected_at_the_right_entry(
    n: int, data: st.DataObject, how: str
) -> None:
    rows = build(n)
    i = data.draw(st.integers(min_value=0, max_value=n - 2), label="index")
    if how == "modify":
        rows[i] = rows[i].model_copy(update={"resource": rows[i].resource + "x"})
        expect = ("modified", i + 1)
    elif how == "delete":
        del rows[i]
        expect = ("deleted", i + 1)
    elif how == "swap":
        rows[i], rows[i + 1] = rows[i + 1], rows[i]
        rows = renumber(rows)
        expect = ("reordered", i + 1)
    else:
        prev = rows[i - 1].entry_hash if i else audit.GENESIS_HASH
        rows = renumber([*rows[:i], audit.AuditEntry.link(i + 1, prev, event(1000)), *rows[i:]])
        expect = ("inserted", i + 1)
    assert _kind(rows) == expect
