"""The trust store: purposes, expiry, revocation by id or key id, one key under several ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mlflow_guard.core import errors
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore
from tests.conftest import KeyRing


def _entry(keyring: KeyRing, name: str, *purposes: Purpose, key: str = "model") -> TrustedKey:
    return TrustedKey(name, keyring[key].signer.public_key, frozenset(purposes))


def test_resolve_by_key_id_and_hint(keyring: KeyRing) -> None:
    e = _entry(keyring, "ci", Purpose.MODEL)
    store = TrustStore([e])
    assert store.resolve(e.key_id, Purpose.MODEL) is e
    assert store.resolve(e.hint.upper(), Purpose.MODEL) is e
    with pytest.raises(errors.KeyNotTrusted, match="not in the trust store"):
        store.resolve("ab" * 32, Purpose.MODEL)


def test_same_key_listed_twice_uses_the_matching_purpose(keyring: KeyRing) -> None:
    model = _entry(keyring, "ci-model", Purpose.MODEL)
    data = _entry(keyring, "ci-data", Purpose.DATASET)
    store = TrustStore([model, data])
    assert store.resolve(model.key_id, Purpose.MODEL).name == "ci-model"
    assert store.resolve(model.key_id, Purpose.DATASET).name == "ci-data"
    with pytest.raises(errors.KeyNotTrusted, match="not for 'approval'"):
        store.resolve(model.key_id, Purpose.APPROVAL)


def test_revoking_one_id_revokes_the_key_everywhere(keyring: KeyRing) -> None:
    old = _entry(keyring, "old", Purpose.MODEL)
    new = _entry(keyring, "new", Purpose.MODEL)
    store = TrustStore([old, new], revoked=["OLD"])
    with pytest.raises(errors.KeyNotTrusted, match="is revoked"):
        store.resolve(new.key_id, Purpose.MODEL)
    assert store.candidates(Purpose.MODEL) == []
    other = _entry(keyring, "other", Purpose.MODEL, key="dataset")
    store = TrustStore([old, other], revoked=[f" {old.key_id} "])
    assert [k.name for k in store.candidates(Purpose.MODEL)] == ["other"]


def test_expiry(keyring: KeyRing) -> None:
    now = datetime.now(UTC)
    e = TrustedKey("ci", keyring["model"].signer.public_key, frozenset({Purpose.MODEL}), now)
    store = TrustStore([e])
    assert store.check(e, Purpose.MODEL, at=now - timedelta(seconds=1)) is e
    with pytest.raises(errors.KeyNotTrusted, match="expired at"):
        store.check(e, Purpose.MODEL, at=now + timedelta(seconds=1))
    with pytest.raises(errors.KeyNotTrusted, match="expired at"):
        store.resolve(e.key_id, Purpose.MODEL)


def test_single_store_trusts_every_purpose_unless_told(keyring: KeyRing) -> None:
    key = keyring["model"].signer.public_key
    assert TrustStore.single(key).candidates(Purpose.AUDIT)
    only = TrustStore.single(key, [Purpose.MODEL])
    assert only.candidates(Purpose.AUDIT) == []
