"""Approval and promotion-request persistence (SQLite, no server): duplicates refused, a
request applied once, concurrent writers serialized by the database."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlflow_guard.core.approvals import Approval, Target
from mlflow_guard.registry.records import DuplicateApproval, RegistryRecords

PROD = Target("alias", "production")
DIGEST = "ab" * 32


def _approval(who: str, decision: str = "approve", digest: str = DIGEST) -> Approval:
    return Approval("m", "1", PROD, digest, who, decision, datetime.now(UTC), "authenticated")  # type: ignore[arg-type]


@pytest.fixture
def records(tmp_path: Path) -> RegistryRecords:
    return RegistryRecords(f"sqlite:///{tmp_path}/guard.db")


def test_duplicate_refused_and_decisions_kept_in_order(records: RegistryRecords) -> None:
    records.record_approval(_approval("bob"), recorded_by="bob", envelope=None)
    with pytest.raises(DuplicateApproval, match="counts once"):
        records.record_approval(_approval("bob"), recorded_by="bob", envelope=None)
    records.record_approval(_approval("bob", "reject"), recorded_by="bob", envelope=None)
    records.record_approval(_approval("bob"), recorded_by="bob", envelope=None)
    got = records.approvals("m", "1", PROD)
    assert [a.decision for a in got] == ["approve", "reject", "approve"]
    assert records.approvals("m", "1", Target("stage", "Production")) == []


def test_concurrent_same_approver_recorded_once(records: RegistryRecords) -> None:
    barrier, errors = threading.Barrier(8), []

    def go() -> None:
        barrier.wait()
        try:
            records.record_approval(_approval("carol"), recorded_by="carol", envelope=None)
        except DuplicateApproval as e:
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(records.approvals("m", "1", PROD)) == 1
    assert len(errors) == 7


def test_request_is_idempotent_and_closes_once(records: RegistryRecords) -> None:
    a = records.request("m", "1", PROD, by="alice", comment="", tag_value=None)
    b = records.request("m", "1", PROD, by="alice", comment="again", tag_value=None)
    assert a.id == b.id
    wins = []
    barrier = threading.Barrier(6)

    def close() -> None:
        barrier.wait()
        wins.append(records.close(a.id, "promoted", by="x"))

    threads = [threading.Thread(target=close) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    got = records.get(a.id)
    assert got is not None
    assert got.state == "promoted"
    c = records.request("m", "1", PROD, by="alice", comment="", tag_value=None)
    assert c.id != a.id
    assert c.state == "pending"
