"""Benchmark: audit appends per second (the hot path of every guarded request) and friends.

For SQLite (WAL, a file in a temp folder) and PostgreSQL (127.0.0.1:5432, a throw-away schema):

- ``plain insert``: the baseline — the same row inserted in its own transaction, no chain;
- ``append_audit``: one chained append (lock head, insert, move head; one transaction);
- ``append_audit x4 threads``: four threads of one process appending at once (total rate);
- ``revision()`` and ``verify_token()``: the two per-request reads of the server;
- ``verify chain``: entries verified per second by ``audit verify`` logic.

Rounds are interleaved (baseline, append, baseline, append, ...) and the best round is kept.
Run: ``.venv/bin/python benchmarks/bench_audit.py [--n 1000]``. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import insert

from mlflow_guard.core import audit
from mlflow_guard.store import GuardStore
from mlflow_guard.store import tables as t
from mlflow_guard.store.rows import audit_row

PG = os.environ.get("MLFLOW_GUARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _event(i: int) -> audit.AuditEvent:
    return audit.AuditEvent(
        user=f"user{i % 7}",
        action="log",
        resource=f"experiment:{i % 50}",
        outcome="allow",
        reasons=["rule data-scientist:log"],
        request_id=secrets.token_hex(8),
    )


def _rate(fn: Callable[[int], None], n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def _threads(store: GuardStore, n: int, k: int = 4) -> float:
    per = n // k
    barrier = threading.Barrier(k + 1)

    def work() -> None:
        barrier.wait()
        for i in range(per):
            store.append_audit(_event(i))

    ts = [threading.Thread(target=work) for _ in range(k)]
    for th in ts:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in ts:
        th.join()
    return per * k / (time.perf_counter() - t0)


def bench(uri: str, n: int, rounds: int) -> dict[str, float]:
    store = GuardStore(uri)
    store.migrate()
    plain_seq = iter(range(10**9, 2 * 10**9))

    def plain(i: int) -> None:
        e = audit.AuditEntry.link(next(plain_seq), audit.GENESIS_HASH, _event(i))
        with store._engine.begin() as conn:
            conn.execute(insert(t.audit).values(**audit_row(e)))

    best: dict[str, float] = {}

    def keep(name: str, value: float) -> None:
        best[name] = max(best.get(name, 0.0), value)

    _, secret = store.create_token("bench", None)
    for _ in range(rounds):
        keep("plain insert (baseline)", _rate(plain, n))
        keep("append_audit", _rate(lambda i: store.append_audit(_event(i)) and None, n))
        keep("append_audit x4 threads", _threads(store, n))
        keep("revision()", _rate(lambda i: store.revision() and None, n))
        keep("verify_token()", _rate(lambda i: store.verify_token(secret) and None, n))
    with store._engine.begin() as conn:  # drop the baseline rows before verifying the chain
        conn.execute(t.audit.delete().where(t.audit.c.seq >= 10**9))
    t0 = time.perf_counter()
    rows = list(store.iter_audit())
    report = audit.verify_chain(rows, head=store.head())
    assert report.ok, report.problem
    best["verify chain (entries/s)"] = len(rows) / (time.perf_counter() - t0)
    store.dispose()
    return best


def _pg_schema() -> tuple[str, Callable[[], None]] | None:
    try:
        import psycopg2
    except ImportError:
        return None
    try:
        admin = psycopg2.connect(PG, connect_timeout=3)
    except psycopg2.OperationalError:
        return None
    admin.autocommit = True
    schema = f"guard_bench_{secrets.token_hex(4)}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()

    return f"{PG}?options=-csearch_path%3D{schema}", drop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="operations per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = bench(f"sqlite:///{Path(tmp) / 'guard.db'}", args.n, args.rounds)
    pg = _pg_schema()
    if pg is not None:
        uri, drop = pg
        try:
            results["PostgreSQL"] = bench(uri, args.n, args.rounds)
        finally:
            drop()
    print(f"audit store, {args.n} operations per measurement, best of {args.rounds} interleaved")
    print(f"rounds, {os.cpu_count()} cores (shared with other jobs while measured)\n")
    print("| database | operation | ops/s | µs/op | vs plain insert |")
    print("|---|---|---:|---:|---:|")
    for db, res in results.items():
        base = res["plain insert (baseline)"]
        for name, rate in res.items():
            ratio = f"{base / rate:.2f}× time" if "entries/s" not in name else "—"
            print(f"| {db} | {name} | {rate:,.0f} | {1e6 / rate:,.0f} | {ratio} |")
    if "PostgreSQL" not in results:
        print(f"\nPostgreSQL not reachable at {PG}: not measured.")


if __name__ == "__main__":
    main()
