"""Token authentication of the serving guard against a real SQLite guard store."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_guard.serving.auth import RevisionReader, TokenAuth
from mlflow_guard.store import GuardStore, StoreError
from tests import _pg


@pytest.fixture
def store(tmp_path: Path) -> GuardStore:
    s = GuardStore(f"sqlite:///{tmp_path}/guard.db")
    s.migrate()
    return s


@pytest.mark.parametrize("inline", [False, True])
def test_valid_token_then_cached_then_revoked(store: GuardStore, inline: bool) -> None:
    token_id, secret = store.create_token("alice", None)
    auth = TokenAuth(store.verify_token, store.revision, inline=inline)

    async def scenario() -> list[object]:
        first = await auth.authenticate(secret)
        assert first is not None
        assert first.user == "alice"
        assert await first.confirm()
        cached = await auth.authenticate(secret)
        assert cached is not None
        assert await cached.confirm()
        assert store.revoke_token(token_id)
        stale = await auth.authenticate(secret)  # cache hit, but the revision moved on
        assert stale is not None
        ok = await stale.confirm()
        after = await auth.authenticate(secret)
        return [ok, after]

    ok, after = asyncio.run(scenario())
    assert ok is False
    assert after is None


def test_other_tokens_survive_a_revision_change(store: GuardStore) -> None:
    _, alice = store.create_token("alice", None)
    auth = TokenAuth(store.verify_token, store.revision)

    async def scenario() -> bool:
        assert await auth.authenticate(alice) is not None
        store.create_token("bob", None)  # bumps the revision
        again = await auth.authenticate(alice)
        assert again is not None
        return await again.confirm()

    assert asyncio.run(scenario()) is True


@pytest.mark.parametrize("bad", ["", "nonsense", "mlg_0000000000000000_" + "A" * 43])
def test_invalid_tokens(store: GuardStore, bad: str) -> None:
    store.create_token("alice", None)
    auth = TokenAuth(store.verify_token, store.revision)
    assert asyncio.run(auth.authenticate(bad)) is None


def test_store_failure_raises_not_allows(tmp_path: Path) -> None:
    broken = GuardStore(f"sqlite:///{tmp_path}/missing/dir/guard.db")
    auth = TokenAuth(broken.verify_token, broken.revision)
    with pytest.raises(StoreError):
        asyncio.run(auth.authenticate("mlg_0123456789abcdef_" + "A" * 43))


def test_store_failure_on_confirm_raises(store: GuardStore, tmp_path: Path) -> None:
    _, secret = store.create_token("alice", None)
    calls = {"n": 0}

    def flaky_revision() -> int:
        calls["n"] += 1
        if calls["n"] > 1:
            raise StoreError("database is gone")
        return store.revision()

    auth = TokenAuth(store.verify_token, flaky_revision)

    async def scenario() -> None:
        assert await auth.authenticate(secret) is not None
        hit = await auth.authenticate(secret)
        assert hit is not None
        await hit.confirm()

    with pytest.raises(StoreError, match="gone"):
        asyncio.run(scenario())


# -- the raw revision read used on every request --------------------------------------------


@pytest.mark.parametrize("hold", [False, True])
def test_revision_reader_follows_the_store(store: GuardStore, tmp_path: Path, hold: bool) -> None:
    reader = RevisionReader.for_uri(f"sqlite:///{tmp_path}/guard.db", hold=hold)
    assert reader() == store.revision()
    token_id, _ = store.create_token("alice", None)
    assert reader() == store.revision()
    before = reader()
    assert store.revoke_token(token_id)
    assert reader() == store.revision() > before
    reader.dispose()


@pytest.mark.parametrize("inline", [False, True])
def test_revoked_token_refused_on_next_request_with_raw_reader(
    store: GuardStore, tmp_path: Path, inline: bool
) -> None:
    token_id, secret = store.create_token("alice", None)
    reader = RevisionReader.for_uri(f"sqlite:///{tmp_path}/guard.db", hold=inline)
    auth = TokenAuth(store.verify_token, reader, inline=inline)

    async def scenario() -> tuple[bool, object]:
        for _ in range(3):  # cached after the first
            hit = await auth.authenticate(secret)
            assert hit is not None
            assert await hit.confirm()
        hit = await auth.authenticate(secret)
        assert hit is not None
        assert store.revoke_token(token_id)  # revoked while the prediction runs
        during = await hit.confirm()
        after = await auth.authenticate(secret)
        return during, after

    during, after = asyncio.run(scenario())
    assert during is False
    assert after is None


@pytest.mark.parametrize("hold", [False, True])
def test_revision_reader_store_errors(tmp_path: Path, hold: bool) -> None:
    db = tmp_path / "guard.db"
    s = GuardStore(f"sqlite:///{db}")
    s.migrate()
    s.dispose()
    reader = RevisionReader.for_uri(f"sqlite:///{db}", hold=hold)
    assert reader() >= 0
    with sqlite3.connect(db) as c:
        c.execute("ALTER TABLE guard_revision RENAME TO moved_away")
    with pytest.raises(StoreError, match="cannot read the revision") as e:
        reader()
    assert "no such table" in " ".join(e.value.details)
    with pytest.raises(StoreError, match="cannot read the revision"):  # still refusing
        reader()
    with sqlite3.connect(db) as c:
        c.execute("ALTER TABLE moved_away RENAME TO guard_revision")
    assert reader() >= 0  # the table is back: the next read answers again
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM guard_revision")
    with pytest.raises(StoreError, match="no revision row"):
        reader()
    missing = RevisionReader.for_uri(f"sqlite:///{tmp_path}/no/such/dir/guard.db", hold=hold)
    with pytest.raises(StoreError, match="cannot read the revision"):
        missing()


def test_cached_token_with_broken_store_raises_on_confirm(tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    s = GuardStore(f"sqlite:///{db}")
    s.migrate()
    _, secret = s.create_token("alice", None)
    auth = TokenAuth(s.verify_token, RevisionReader.for_uri(f"sqlite:///{db}"), inline=True)

    async def scenario() -> None:
        first = await auth.authenticate(secret)
        assert first is not None
        assert await first.confirm()
        with sqlite3.connect(db) as c:
            c.execute("DROP TABLE guard_revision")
        hit = await auth.authenticate(secret)  # still cached
        assert hit is not None
        await hit.confirm()

    with pytest.raises(StoreError, match="cannot read the revision"):
        asyncio.run(scenario())


@pytest.fixture
def pg_uri() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL (skip, or fail under CI=true, if unreachable)."""
    admin = _pg.admin_connection()
    schema = f"serving_test_{secrets.token_hex(6)}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{_pg.PG}?options=-csearch_path%3D{schema}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


@pytest.mark.postgres
@pytest.mark.parametrize("hold", [False, True])
def test_revision_reader_on_postgresql(pg_uri: str, hold: bool) -> None:
    store = GuardStore(pg_uri)
    store.migrate()
    token_id, secret = store.create_token("alice", None)
    reader = RevisionReader.for_uri(pg_uri, hold=hold)
    assert reader() == store.revision()
    auth = TokenAuth(store.verify_token, reader)  # worker-thread reads, as for PostgreSQL

    async def scenario() -> tuple[bool, bool, object]:
        first = await auth.authenticate(secret)
        assert first is not None
        hit = await auth.authenticate(secret)
        assert hit is not None
        cached_ok = await hit.confirm()
        hit = await auth.authenticate(secret)
        assert hit is not None
        assert store.revoke_token(token_id)
        return cached_ok, await hit.confirm(), await auth.authenticate(secret)

    cached_ok, during, after = asyncio.run(scenario())
    assert cached_ok is True
    assert during is False
    assert after is None
    admin = _pg.admin_connection()
    schema = pg_uri.rsplit("%3D", 1)[1]
    with admin.cursor() as cur:  # waits on any transaction a reader left open: fail fast
        cur.execute("SET lock_timeout = '5s'")
        cur.execute(f"DROP TABLE {schema}.guard_revision")
    admin.close()
    with pytest.raises(StoreError, match="cannot read the revision"):
        reader()
    reader.dispose()
    store.dispose()


# -- the optional freshness window (--token-recheck) -----------------------------------------


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("inline", [False, True])
def test_window_revoked_token_refused_once_the_window_passed(
    store: GuardStore, tmp_path: Path, inline: bool
) -> None:
    token_id, secret = store.create_token("alice", None)
    reads = {"n": 0}
    reader = RevisionReader.for_uri(f"sqlite:///{tmp_path}/guard.db", hold=inline)

    def counted() -> int:
        reads["n"] += 1
        return reader()

    clock = Clock()
    auth = TokenAuth(store.verify_token, counted, inline=inline, recheck=1.0, clock=clock)

    async def confirmed() -> bool:
        who = await auth.authenticate(secret)
        return who is not None and await who.confirm()

    async def scenario() -> list[object]:
        out: list[object] = [await confirmed()]  # full check: one read
        clock.now += 0.5
        out.append(await confirmed())  # inside the window: no read
        out.append(reads["n"])
        assert store.revoke_token(token_id)
        clock.now += 0.4  # still inside: the documented trade-off
        out.append(await confirmed())
        clock.now += 0.2  # 1.1 s after the last read: read, changed, re-verified
        out.append(await confirmed())
        out.append(await auth.authenticate(secret))
        return out

    first, in_window, n_reads, before_expiry, after_expiry, again = asyncio.run(scenario())
    assert (first, in_window, n_reads) == (True, True, 1)
    assert before_expiry is True
    assert after_expiry is False
    assert again is None


def test_window_zero_reads_every_time(store: GuardStore, tmp_path: Path) -> None:
    token_id, secret = store.create_token("alice", None)
    reader = RevisionReader.for_uri(f"sqlite:///{tmp_path}/guard.db", hold=True)
    clock = Clock()
    auth = TokenAuth(store.verify_token, reader, inline=True, clock=clock)

    async def scenario() -> bool:
        who = await auth.authenticate(secret)
        assert who is not None
        assert await who.confirm()
        assert store.revoke_token(token_id)  # same instant: no window to wait for
        who = await auth.authenticate(secret)
        assert who is not None
        return await who.confirm()

    assert asyncio.run(scenario()) is False


def test_window_store_error_after_the_window_raises(tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    s = GuardStore(f"sqlite:///{db}")
    s.migrate()
    _, secret = s.create_token("alice", None)
    clock = Clock()
    reader = RevisionReader.for_uri(f"sqlite:///{db}", hold=True)
    auth = TokenAuth(s.verify_token, reader, inline=True, recheck=1.0, clock=clock)

    async def scenario() -> None:
        who = await auth.authenticate(secret)
        assert who is not None
        assert await who.confirm()
        with sqlite3.connect(db) as c:
            c.execute("DROP TABLE guard_revision")
        clock.now += 1.0  # the window of the last good read has passed
        who = await auth.authenticate(secret)
        assert who is not None
        await who.confirm()

    with pytest.raises(StoreError, match="cannot read the revision"):
        asyncio.run(scenario())


def test_window_must_not_be_negative(store: GuardStore) -> None:
    with pytest.raises(ValueError, match="recheck must be >= 0"):
        TokenAuth(store.verify_token, store.revision, recheck=-1)
