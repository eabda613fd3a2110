"""Red-team attacks on the audit log by someone who can write the guard database.

Each attack is played with raw SQL on SQLite and PostgreSQL; verification (the library and the
real ``mlflow-guard audit`` CLI) must name the problem and change nothing in the database.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlflow_guard.cli import main as cli_main
from mlflow_guard.core import audit
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.store import GuardStore, snapshot
from tests.conftest import KeyRing
from tests.store.test_store import sql
from tests.store.test_tampering import dump, fill


def _trust(keyring: KeyRing) -> TrustStore:
    return TrustStore.single(keyring["audit"].signer.public_key, [Purpose.AUDIT])


def _rewind(uri: str, to_seq: int) -> None:
    """Delete every entry after ``to_seq`` and move the head record back consistently."""
    (h,) = sql(uri, "SELECT entry_hash FROM guard_audit WHERE seq = :s", s=to_seq)[0]
    sql(uri, "DELETE FROM guard_audit WHERE seq > :s", s=to_seq)
    sql(uri, "UPDATE guard_audit_head SET seq = :s, entry_hash = :h", s=to_seq, h=h)


def test_tail_truncated_after_a_checkpoint_is_named(
    store: GuardStore, db_uri: str, keyring: KeyRing
) -> None:
    # The server signed the head at seq 10; the attacker deletes 8..10 and rewinds the head
    # record so the remaining chain is consistent. The checkpoint still names seq 10.
    fill(store)
    store.write_checkpoint(keyring["audit"].signer)
    assert snapshot.verify(store, _trust(keyring)).ok
    _rewind(db_uri, 7)
    before = dump(db_uri)
    report = snapshot.verify(store, _trust(keyring))
    assert report.problem is not None, "a tail cut behind a signed checkpoint went unnoticed"
    assert report.problem.kind == "truncated"
    assert report.problem.seq == 10
    assert "only 7 entries" in report.problem.message
    assert dump(db_uri) == before


def test_truncation_after_a_checkpoint_fails_the_cli_and_survives_export(
    store: GuardStore,
    db_uri: str,
    keyring: KeyRing,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fill(store)
    store.write_checkpoint(keyring["audit"].signer)
    _rewind(db_uri, 5)
    pub = str(keyring["audit"].public)
    rc = cli_main(["audit", "verify", "--database-uri", db_uri, "--public-key", pub, "--json"])
    out, err = capsys.readouterr()
    assert rc == 1, out + err
    assert "truncated" in out + err
    # The export keeps the checkpoint as evidence, so the archived copy fails offline too.
    path = str(tmp_path / "audit.jsonl")
    assert cli_main(["audit", "export", "--jsonl", "--out", path, "--database-uri", db_uri]) == 0
    kinds = [json.loads(line)["kind"] for line in Path(path).read_text().splitlines()]
    assert kinds.count("checkpoint") == 1
    assert cli_main(["audit", "verify", "--from-jsonl", path, "--public-key", pub]) == 1
    assert "truncated" in capsys.readouterr().err


def test_replayed_old_checkpoint_does_not_hide_a_rewrite(
    store: GuardStore, db_uri: str, keyring: KeyRing
) -> None:
    # Copying a valid checkpoint row again (or back after deleting a newer one) proves only what
    # it signed: a rewrite of entries up to that point is still found.
    signer = keyring["audit"].signer
    rows = fill(store)
    assert rows[2].outcome == "deny"
    store.write_checkpoint(signer)
    sql(
        db_uri,
        "INSERT INTO guard_audit_checkpoints (seq, entry_hash, created_at, key_id, envelope)"
        " SELECT seq, entry_hash, created_at, key_id, envelope FROM guard_audit_checkpoints",
    )
    assert snapshot.verify(store, _trust(keyring)).checkpoints_verified == 2
    sql(db_uri, "UPDATE guard_audit SET outcome = 'allow' WHERE seq = 3")
    before = dump(db_uri)
    report = snapshot.verify(store, _trust(keyring))
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("modified", 3)
    assert dump(db_uri) == before


def test_checkpoint_signed_with_a_key_of_another_purpose_fails(
    store: GuardStore, keyring: KeyRing
) -> None:
    # The attacker holds the model-signing key (CI) and signs a checkpoint over a rewritten log.
    fill(store)
    store.write_checkpoint(keyring["model"].signer)
    trust = TrustStore.single(keyring["model"].signer.public_key, [Purpose.MODEL])
    trust_audit = _trust(keyring)
    for t in (trust, trust_audit):
        report = snapshot.verify(store, t)
        assert report.problem is not None
        assert report.problem.kind == "checkpoint"
        assert "does not verify" in report.problem.message


def test_checkpoint_stored_seq_edited_to_hide_truncation_fails(
    store: GuardStore, db_uri: str, keyring: KeyRing
) -> None:
    # Moving the checkpoint row's unsigned seq column under the rewound head does not help:
    # the stored seq/hash must equal the signed ones.
    fill(store)
    store.write_checkpoint(keyring["audit"].signer)
    _rewind(db_uri, 6)
    (h,) = sql(db_uri, "SELECT entry_hash FROM guard_audit WHERE seq = 6")[0]
    sql(db_uri, "UPDATE guard_audit_checkpoints SET seq = 6, entry_hash = :h", h=h)
    report = snapshot.verify(store, _trust(keyring))
    assert report.problem is not None
    assert report.problem.kind == "checkpoint"
    assert "differ from the signed ones" in report.problem.message


def test_verification_of_an_untouched_log_with_a_checkpoint_signer_is_ok(
    db_uri: str, keyring: KeyRing
) -> None:
    writer = GuardStore(db_uri, checkpoint_signer=keyring["audit"].signer, checkpoint_every=4)
    writer.migrate()
    try:
        fill(writer)
        report = snapshot.verify(writer, _trust(keyring))
    finally:
        writer.dispose()
    assert report.ok, report.problem
    assert report.checkpoints_verified >= 2


def _signed_log(db_uri: str, keyring: KeyRing, rounds: int = 2) -> list[int]:
    """A log written by a server that signs a checkpoint every 4 entries; checkpoint seqs."""
    writer = GuardStore(db_uri, checkpoint_signer=keyring["audit"].signer, checkpoint_every=4)
    writer.migrate()
    try:
        for _ in range(rounds):
            fill(writer)
    finally:
        writer.dispose()
    return [int(r[0]) for r in sql(db_uri, "SELECT seq FROM guard_audit_checkpoints ORDER BY seq")]


def test_deleted_checkpoints_are_a_problem_when_the_policy_signs_them(
    store: GuardStore, db_uri: str, keyring: KeyRing
) -> None:
    # Deleting every checkpoint row is what lets a writer recompute the whole chain unnoticed.
    # Without a schedule that is only a note; with the policy's schedule it is a problem.
    seqs = _signed_log(db_uri, keyring)
    assert seqs == [4, 8, 12, 16, 20]
    schedule = audit.CheckpointSchedule(every=4, interval=False, slack=0)
    assert snapshot.verify(store, _trust(keyring), schedule).ok
    sql(db_uri, "DELETE FROM guard_audit_checkpoints")
    before = dump(db_uri)
    assert snapshot.verify(store, _trust(keyring)).ok  # no schedule: a note only
    report = snapshot.verify(store, _trust(keyring), schedule)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("checkpoint", 1)
    assert "no signed checkpoint in a log of 20 entries" in report.problem.message
    assert dump(db_uri) == before


def test_recent_checkpoints_deleted_leave_a_gap_the_schedule_names(
    store: GuardStore, db_uri: str, keyring: KeyRing
) -> None:
    # Keeping only the first checkpoint allows rewriting everything after seq 4.
    _signed_log(db_uri, keyring)
    sql(db_uri, "DELETE FROM guard_audit_checkpoints WHERE seq > 4")
    report = snapshot.verify(
        store, _trust(keyring), audit.CheckpointSchedule(every=4, interval=False, slack=0)
    )
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("checkpoint", 5)
    assert "no signed checkpoint after seq 4, 16 entries before the head" in report.problem.message
    # a log that has not reached its first count-based checkpoint yet is fine
    assert audit.CheckpointSchedule(every=1000, interval=False).missing(20, []) is None
    assert audit.CheckpointSchedule(every=0, interval=True).missing(20, []) is not None


def test_cli_verify_applies_the_policys_checkpoint_schedule(
    db_uri: str, keyring: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _signed_log(db_uri, keyring, rounds=1)
    policy = tmp_path / "guard.yaml"
    policy.write_text(
        json.dumps(
            {
                "version": 1,
                "keys": [
                    {
                        "id": "audit",
                        "public_key": str(keyring["audit"].public),
                        "purposes": ["audit"],
                    }
                ],
                "storage": {
                    "database_uri": db_uri,
                    "audit_key": str(keyring["audit"].private),
                    "checkpoint_every": 4,
                    "checkpoint_interval": None,
                },
            }
        )
    )
    assert cli_main(["audit", "verify", "--policy", str(policy)]) == 0
    capsys.readouterr()
    sql(db_uri, "DELETE FROM guard_audit_checkpoints")
    assert cli_main(["audit", "verify", "--policy", str(policy)]) == 1
    err = capsys.readouterr().err
    assert "no signed checkpoint in a log of 10 entries" in err
    assert "mlflow-guard audit checkpoint" in err
