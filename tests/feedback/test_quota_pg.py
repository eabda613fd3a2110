"""Quotas are exact under concurrent PostgreSQL ingesters (one advisory lock per source).

Each ingester is a thread with its own :class:`FeedbackStore` (own engine, own connections), as
replicas would be. The window between counting a source's claims and committing is widened by a
pause after the count, so that without the lock every ingester counts before any commits; the
control test removes the lock and shows the quota is then exceeded, so the exactness tests can
fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from mlflow_guard.feedback import store as store_mod
from mlflow_guard.feedback.destinations import TableDestination, TableQuarantineSink
from mlflow_guard.feedback.ingest import BatchResult, Ingestor
from tests._pg import temporary_database
from tests.feedback.conftest import NOW, Env

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

QUOTA = 12
WORKERS = 4
PER_WORKER = 10  # 40 offered against a quota of 12
PAUSE = 0.3  # seconds between counting a source's claims and claiming


@pytest.fixture
def pg_uri() -> Iterator[str]:
    with temporary_database("guard_quota") as uri:
        yield uri


@pytest.fixture
def slow_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pause after every quota count: all unserialised ingesters count before any commits."""
    real = store_mod.Tx.count_since

    def count_then_pause(self: store_mod.Tx, source: str, since: float) -> int:
        n = real(self, source, since)
        time.sleep(PAUSE)
        return n

    monkeypatch.setattr(store_mod.Tx, "count_since", count_then_pause)


def _quota_env(make_env: Callable[..., Env], pg_uri: str, sources: list[str]) -> Env:
    quotas = {s: {"records": QUOTA, "per": "1h"} for s in sources}
    return make_env({"quotas": quotas}, db=pg_uri)


def _ingest_concurrently(env: Env, batches: list[bytes]) -> list[BatchResult]:
    """Each batch by its own ingester (thread + store), all released at the same instant."""
    stores = [env.store() for _ in batches]  # tables exist and engines are built before the race
    barrier = threading.Barrier(len(batches))

    def work(i: int) -> BatchResult:
        ing = Ingestor(
            env.policy, stores[i], TableDestination(), TableQuarantineSink(), clock=lambda: NOW
        )
        barrier.wait(timeout=60)
        return ing.ingest(batches[i])

    try:
        with ThreadPoolExecutor(len(batches)) as pool:
            return list(pool.map(work, range(len(batches))))
    finally:
        for s in stores:
            s.dispose()


def _offer(env: Env, signer_names: list[str]) -> tuple[list[bytes], list[bytes]]:
    """WORKERS batches of PER_WORKER records, cycling through ``signer_names`` per batch."""
    signers = {"checkout": env.checkout, "mobile": env.mobile}
    batches, offered = [], []
    for w in range(WORKERS):
        names = signer_names if w % 2 == 0 else list(reversed(signer_names))
        lines = [env.line(signers[names[i % len(names)]], f"w{w}-{i}") for i in range(PER_WORKER)]
        offered += lines
        batches.append(b"\n".join(lines) + b"\n")
    return batches, offered


def _source(raw: bytes) -> str:
    return "checkout" if b'"source":"checkout"' in raw else "mobile"


def _assert_exact(env: Env, results: list[BatchResult], offered: list[bytes]) -> None:
    store = env.store()
    try:
        accepted = [bytes(r["raw"]) for r in store.accepted_rows()]
        quarantined = store.quarantine_rows()
    finally:
        store.dispose()
    sources = sorted({_source(raw) for raw in offered})
    for s in sources:
        assert sum(len(r.by_source().get(s, [])) for r in results) == QUOTA
        assert sum(1 for raw in accepted if _source(raw) == s) == QUOTA
    assert {q["reason"] for q in quarantined} == {"quota"}
    assert all("over its quota of 12 records per 3600s" in q["message"] for q in quarantined)
    assert len(quarantined) == len(offered) - QUOTA * len(sources)
    # none lost, none twice: every offered record is accepted or quarantined, exactly once
    assert sorted(accepted + [bytes(q["raw"]) for q in quarantined]) == sorted(offered)


def test_quota_is_exact_under_concurrent_ingesters(
    make_env: Callable[..., Env], pg_uri: str, slow_count: None
) -> None:
    env = _quota_env(make_env, pg_uri, ["checkout"])
    batches, offered = _offer(env, ["checkout"])
    results = _ingest_concurrently(env, batches)
    _assert_exact(env, results, offered)


def test_quota_is_exact_without_a_widened_window(make_env: Callable[..., Env], pg_uri: str) -> None:
    env = _quota_env(make_env, pg_uri, ["checkout"])
    offered: list[bytes] = []
    for _ in range(3):  # three rounds in the same period: the quota stays spent
        batches, lines = _offer(env, ["checkout"])
        offered += lines
        results = _ingest_concurrently(env, batches)
    assert sum(len(r.accepted) for r in results) == 0  # the last round found it spent
    store = env.store()
    try:
        accepted = [bytes(r["raw"]) for r in store.accepted_rows()]
        quarantined = store.quarantine_rows()
    finally:
        store.dispose()
    assert len(accepted) == QUOTA
    assert {q["reason"] for q in quarantined} == {"quota"}
    assert sorted(accepted + [bytes(q["raw"]) for q in quarantined]) == sorted(offered)


def test_batches_sharing_sources_in_any_order_do_not_deadlock(
    make_env: Callable[..., Env], pg_uri: str, slow_count: None
) -> None:
    env = _quota_env(make_env, pg_uri, ["checkout", "mobile"])
    batches, offered = _offer(env, ["checkout", "mobile"])  # odd workers list mobile first
    results = _ingest_concurrently(env, batches)
    _assert_exact(env, results, offered)


def test_without_the_source_lock_the_quota_is_exceeded(
    make_env: Callable[..., Env],
    pg_uri: str,
    slow_count: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Control: the race the lock closes is real, so the tests above can fail."""
    monkeypatch.setattr(store_mod.Tx, "lock_sources", lambda self, sources: None)
    env = _quota_env(make_env, pg_uri, ["checkout"])
    batches, _ = _offer(env, ["checkout"])
    results = _ingest_concurrently(env, batches)
    assert sum(len(r.accepted) for r in results) > QUOTA


def test_source_lock_keys_are_signed_64_bit_and_distinct() -> None:
    keys = {store_mod.source_lock_key(s) for s in ("checkout", "mobile", "web", "Checkout")}
    assert len(keys) == 4
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert store_mod.source_lock_key("checkout") == store_mod.source_lock_key("checkout")


def test_the_lock_is_held_until_the_transaction_ends(pg_uri: str) -> None:
    """A second connection cannot take a source's lock while the first transaction is open."""
    held = store_mod.FeedbackStore(pg_uri)
    probe = sa.create_engine(pg_uri.replace("postgresql://", "postgresql+psycopg2://"))
    key = store_mod.source_lock_key("checkout")
    try:
        with held.transaction() as tx:
            tx.lock_sources(["checkout"])
            with probe.connect() as c:
                got = c.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
                assert got.scalar_one() is False
        with probe.connect() as c:
            got = c.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
            assert got.scalar_one() is True
    finally:
        held.dispose()
        probe.dispose()
