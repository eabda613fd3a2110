"""Fail closed: an unwritable, unreachable or unmigrated database raises StoreError."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mlflow_guard.core.errors import EXIT_INTERNAL
from mlflow_guard.store import GuardStore, StoreError, engine
from mlflow_guard.store.engine import parse_uri
from tests.store.conftest import event


def test_read_only_sqlite_refuses_every_write_and_keeps_reading(tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    rw = GuardStore(f"sqlite:///{db}")
    rw.migrate()
    first = rw.append_audit(event(1))
    token_id, secret = rw.create_token("alice", None)
    rw.dispose()

    ro = GuardStore(f"sqlite:///file:{db}?mode=ro&uri=true")
    with pytest.raises(StoreError) as err:
        ro.append_audit(event(2))
    assert "cannot append to the audit log" in err.value.summary
    assert "readonly" in " ".join(err.value.details).lower()
    assert err.value.exit_code == EXIT_INTERNAL
    assert err.value.hint
    for write in (
        lambda: ro.revoke_token(token_id),
        lambda: ro.create_token("bob", None),
        ro.bump_revision,
    ):
        with pytest.raises(StoreError):
            write()
    # Nothing changed, and reads still answer.
    assert ro.head() == (1, first.entry_hash)
    assert list(ro.iter_audit()) == [first]
    assert ro.verify_token(secret) is not None
    assert ro.revision() == 1
    ro.dispose()


def test_missing_sqlite_directory_is_a_store_error(tmp_path: Path) -> None:
    s = GuardStore(f"sqlite:///{tmp_path}/no/such/dir/guard.db")
    with pytest.raises(StoreError):
        s.migrate()
    with pytest.raises(StoreError):
        s.append_audit(event(1))


def test_unmigrated_database_says_how_to_fix(tmp_path: Path) -> None:
    s = GuardStore(f"sqlite:///{tmp_path}/guard.db")
    with pytest.raises(StoreError) as err:
        s.revision()
    assert "schema is missing" in err.value.hint
    with pytest.raises(StoreError):
        s.append_audit(event(1))
    with pytest.raises(StoreError):
        s.verify_token("mlg_" + "0" * 16 + "_" + "a" * 43)


def test_unreachable_postgresql_fails_fast_with_store_error() -> None:
    s = GuardStore("postgresql://postgres@127.0.0.1:1/test")  # nothing listens on port 1
    start = time.monotonic()
    with pytest.raises(StoreError) as err:
        s.append_audit(event(1))
    assert time.monotonic() - start < 10
    assert "127.0.0.1:1" in err.value.summary
    with pytest.raises(StoreError):
        s.verify_token("mlg_" + "0" * 16 + "_" + "a" * 43)
    with pytest.raises(StoreError):
        s.revision()


@pytest.mark.postgres
def test_postgresql_wrong_database_is_a_store_error(pg_admin: object) -> None:
    s = GuardStore("postgresql://postgres@127.0.0.1:5432/no_such_database_guard")
    with pytest.raises(StoreError, match="no_such_database_guard"):
        s.migrate()


def test_password_is_never_shown() -> None:
    s = GuardStore("postgresql://guard:s3cr3t-pw@127.0.0.1:1/test")
    with pytest.raises(StoreError) as err:
        s.revision()
    assert "s3cr3t-pw" not in err.value.diagnostics()
    assert "s3cr3t-pw" not in s.url


@pytest.mark.parametrize(
    "uri", ["mysql://u@h/db", "not a uri", "", "oracle://x", "sqlite+pysqlcipher:///x.db"]
)
def test_unsupported_or_invalid_uri_is_refused_up_front(uri: str) -> None:
    with pytest.raises(StoreError):
        GuardStore(uri)


@pytest.mark.postgres
def test_stuck_lock_holder_fails_the_append_instead_of_hanging(
    pg_uri_factory: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "PG_LOCK_TIMEOUT_MS", 500)
    uri = pg_uri_factory()
    store = GuardStore(uri)
    store.migrate()
    store.append_audit(event(1))
    holder = create_engine(parse_uri(uri)).connect()
    txn = holder.begin()
    holder.execute(text("SELECT seq FROM guard_audit_head WHERE id = 1 FOR UPDATE"))
    try:
        start = time.monotonic()
        with pytest.raises(StoreError, match="cannot append"):
            store.append_audit(event(2))
        assert time.monotonic() - start < 5
    finally:
        txn.rollback()
        holder.close()
    assert store.append_audit(event(3)).seq == 2
    assert store.head()[0] == 2
    store.dispose()
