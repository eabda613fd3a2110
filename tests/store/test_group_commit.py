"""Group commit: concurrent callers share transactions, each gets its own result or the error."""

from __future__ import annotations

import threading
import time

import pytest

from mlflow_guard.core import audit
from mlflow_guard.store import GuardStore, StoreError
from mlflow_guard.store.group_commit import GroupCommit
from tests.store.conftest import event


def _hammer(gc: GroupCommit[int, int], n: int) -> tuple[dict[int, int], dict[int, BaseException]]:
    results: dict[int, int] = {}
    errors: dict[int, BaseException] = {}
    barrier = threading.Barrier(n)

    def call(i: int) -> None:
        barrier.wait()
        try:
            results[i] = gc.submit(i)
        except Exception as e:
            errors[i] = e

    ts = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in ts), "a caller never returned"
    return results, errors


def test_concurrent_callers_share_batches_and_get_their_own_result() -> None:
    batches: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        batches.append(list(items))
        time.sleep(0.02)
        return [i * 10 for i in items]

    results, errors = _hammer(GroupCommit(write, max_batch=5), 16)
    assert not errors
    assert results == {i: i * 10 for i in range(16)}
    assert sorted(i for b in batches for i in b) == list(range(16)), "each item written once"
    assert len(batches) < 16, "no batching happened"
    assert max(len(b) for b in batches) <= 5


def test_a_failed_batch_fails_every_caller_in_it_and_later_calls_still_work() -> None:
    calls = 0

    def write(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        time.sleep(0.01)
        if calls == 1:
            raise RuntimeError("disk full")
        return items

    gc: GroupCommit[int, int] = GroupCommit(write)
    results, errors = _hammer(gc, 8)
    assert errors, "the failing batch must surface"
    assert all(isinstance(e, RuntimeError) for e in errors.values())
    assert set(results) | set(errors) == set(range(8))
    assert all(results[i] == i for i in results)
    assert gc.submit(42) == 42


def test_single_caller_is_not_delayed() -> None:
    gc: GroupCommit[int, int] = GroupCommit(lambda items: items)
    t0 = time.perf_counter()
    for i in range(1000):
        assert gc.submit(i) == i
    assert time.perf_counter() - t0 < 1.0


def test_threads_appending_to_the_store_keep_the_chain_linear(store: GuardStore) -> None:
    entries: list[audit.AuditEntry] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for i in range(25):
            e = store.append_audit(event(k * 100 + i))
            with lock:
                entries.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(e.seq for e in entries) == list(range(1, 151))
    stored = list(store.iter_audit())
    assert sorted(entries, key=lambda e: e.seq) == stored
    assert audit.verify_chain(stored, head=store.head()).ok


def test_unhashable_event_fails_alone(store: GuardStore) -> None:
    bad = event(1).model_copy(update={"user": "\ud800"})  # lone surrogate: no UTF-8 form
    with pytest.raises(StoreError):
        store.append_audit(bad)
    assert store.append_audit(event(2)).seq == 1
