"""GuardStore on real SQLite and PostgreSQL: schema, revision counter, tokens, audit append."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mlflow_guard.core import audit, keys
from mlflow_guard.core.errors import PolicyError, UsageError
from mlflow_guard.core.policy import Purpose, load_policy
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.store import GuardStore, TokenInfo
from mlflow_guard.store import guard_store as gs
from mlflow_guard.store.engine import parse_uri
from tests.conftest import KeyRing, PolicyWriter
from tests.store.conftest import event


def sql(uri: str, statement: str, **params: object) -> list[tuple[object, ...]]:
    """Run raw SQL on the guard database (as an attacker or an inspector would)."""
    eng = create_engine(parse_uri(uri))
    try:
        with eng.begin() as conn:
            res = conn.execute(text(statement), params)
            return [tuple(r) for r in res] if res.returns_rows else []
    finally:
        eng.dispose()


def test_migrate_is_idempotent_and_seeds_the_single_rows(store: GuardStore, db_uri: str) -> None:
    store.migrate()
    assert store.revision() == 0
    assert store.head() == (0, audit.GENESIS_HASH)
    assert sql(db_uri, "SELECT version_num FROM guard_alembic_version") == [
        ("0003_feedback_files",)
    ]


def test_revision_bumps_by_one(store: GuardStore) -> None:
    assert [store.bump_revision() for _ in range(3)] == [1, 2, 3]
    assert store.revision() == 3


def test_token_round_trip_and_only_the_digest_is_stored(store: GuardStore, db_uri: str) -> None:
    exp = datetime.now(UTC) + timedelta(days=1)
    rev0 = store.revision()
    token_id, secret = store.create_token("alice", exp, "ci pipeline")
    assert secret.startswith(f"mlg_{token_id}_")
    assert len(secret) > 50
    assert store.revision() == rev0 + 1
    info = store.verify_token(secret)
    assert isinstance(info, TokenInfo)
    assert (info.token_id, info.user, info.description) == (token_id, "alice", "ci pipeline")
    assert info.expires_at is not None
    assert abs(info.expires_at - exp) < timedelta(seconds=1)
    rows = sql(db_uri, "SELECT * FROM guard_tokens")
    assert len(rows) == 1
    assert not any(secret in str(v) for v in rows[0])
    assert hashlib.sha256(secret.encode()).hexdigest() in rows[0]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),
        lambda s: s + "x",
        lambda s: s.replace("mlg_", "mlx_"),
        lambda s: "",
        lambda s: "mlg_" + "0" * 16 + "_" + "a" * 43,
        lambda s: s + "a" * 300,
        lambda s: s.upper(),
    ],
)
def test_wrong_or_malformed_secrets_are_refused(store: GuardStore, mutate: object) -> None:
    _, secret = store.create_token("alice", None)
    assert store.verify_token(mutate(secret)) is None  # type: ignore[operator]
    assert store.verify_token(secret) is not None


def test_revoked_token_stops_at_once_and_bumps_revision(store: GuardStore) -> None:
    token_id, secret = store.create_token("bob", None)
    _other_id, other = store.create_token("bob", None)
    rev = store.revision()
    assert store.revoke_token(token_id) is True
    assert store.revision() == rev + 1
    assert store.verify_token(secret) is None
    assert store.verify_token(other) is not None
    assert store.revoke_token(token_id) is False
    assert store.revoke_token("0" * 16) is False
    assert store.revision() == rev + 1
    info = store.get_token(token_id)
    assert info is not None
    assert info.status() == "revoked"


def test_expired_token_is_refused(store: GuardStore, db_uri: str) -> None:
    token_id, secret = store.create_token("carol", datetime.now(UTC) + timedelta(hours=1))
    assert store.verify_token(secret) is not None
    sql(
        db_uri,
        "UPDATE guard_tokens SET expires_at = :t WHERE token_id = :i",
        t=datetime.now(UTC) - timedelta(seconds=1),
        i=token_id,
    )
    assert store.verify_token(secret) is None
    info = store.get_token(token_id)
    assert info is not None
    assert info.status() == "expired"


def test_create_token_rejects_bad_input(store: GuardStore) -> None:
    with pytest.raises(UsageError, match="in the past"):
        store.create_token("alice", datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(UsageError, match="user"):
        store.create_token("  ", None)
    assert store.list_tokens() == []


def test_list_tokens_filters_by_user(store: GuardStore) -> None:
    a, _ = store.create_token("alice", None, "one")
    b, _ = store.create_token("bob", None, "two")
    c, _ = store.create_token("alice", None, "three")
    assert {t.token_id for t in store.list_tokens()} == {a, b, c}
    assert {t.token_id for t in store.list_tokens("alice")} == {a, c}
    assert store.list_tokens("nobody") == []


def test_append_builds_a_linear_chain(store: GuardStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs, "AUDIT_BATCH", 7)  # exercise batched reads
    entries = [
        store.append_audit(event(i, outcome="deny" if i % 4 == 0 else "allow"))
        for i in range(1, 31)
    ]
    assert [e.seq for e in entries] == list(range(1, 31))
    assert entries[0].prev_hash == audit.GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
    stored = list(store.iter_audit())
    assert stored == entries
    assert [e.seq for e in store.iter_audit(start_seq=25)] == list(range(25, 31))
    assert store.head() == (30, entries[-1].entry_hash)
    assert audit.verify_chain(stored, head=store.head()).ok


def test_unicode_and_odd_values_round_trip(store: GuardStore) -> None:
    ev = audit.AuditEvent(
        user="zoë",
        action="log",
        resource="experiment:naïve/'; DROP TABLE guard_audit;--",
        outcome="deny",
        reasons=["über", "", "line\nbreak", "emoji 🔒"],
        request_id="",
    )
    e = store.append_audit(ev)
    [back] = list(store.iter_audit())
    assert back == e
    assert back.event == ev
    assert audit.verify_chain([back]).ok


def test_periodic_checkpoints_are_signed_and_verify(db_uri: str) -> None:
    signer = keys.Signer(keys.generate())
    s = GuardStore(db_uri, checkpoint_signer=signer, checkpoint_every=5)
    s.migrate()
    for i in range(12):
        s.append_audit(event(i))
    cps = s.checkpoints()
    assert [c.seq for c in cps] == [5, 10]
    trust = TrustStore.single(signer.public_key, [Purpose.AUDIT])
    r = audit.verify_chain(s.iter_audit(), checkpoints=cps, trust=trust, head=s.head())
    assert r.ok
    assert r.checkpoints_verified == 2
    manual = s.write_checkpoint(signer)
    assert manual is not None
    assert manual.seq == 12
    s.dispose()


def test_time_based_checkpoint(db_uri: str) -> None:
    signer = keys.Signer(keys.generate())
    s = GuardStore(db_uri, checkpoint_signer=signer, checkpoint_interval=timedelta(hours=1))
    s.migrate()
    s.append_audit(event(1))  # no checkpoint yet: the first one is due at once
    s.append_audit(event(2))
    assert [c.seq for c in s.checkpoints()] == [1]
    s.dispose()


def test_empty_log_has_no_checkpoint(store: GuardStore) -> None:
    assert store.write_checkpoint(keys.Signer(keys.generate())) is None
    assert store.checkpoints() == []


def test_from_policy_signs_checkpoints_with_the_audit_key(
    tmp_path: Path, keyring: KeyRing, write_policy: PolicyWriter
) -> None:
    pair = keyring["audit"]
    uri = f"sqlite:///{tmp_path}/g.db"
    storage = {"database_uri": uri, "audit_key": str(pair.private), "checkpoint_every": 3}
    good = write_policy(
        raw={
            "version": 1,
            "keys": [{"id": "srv", "public_key": str(pair.public), "purposes": ["audit"]}],
            "storage": storage,
        }
    )
    s = GuardStore.from_policy(load_policy(good))
    s.migrate()
    for i in range(3):
        s.append_audit(event(i))
    cps = s.checkpoints()
    assert [c.seq for c in cps] == [1, 3]  # first one at once (default interval), then every 3
    assert all(c.envelope["signatures"][0]["keyid"] == pair.key_id for c in cps)
    s.dispose()
    other = keyring.get("other-audit")
    bad = write_policy(
        raw={
            "version": 1,
            "keys": [{"id": "srv", "public_key": str(other.public), "purposes": ["audit"]}],
            "storage": storage,
        }
    )
    with pytest.raises(PolicyError, match="no matching public key"):
        GuardStore.from_policy(load_policy(bad))
