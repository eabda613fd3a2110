"""Two ingesters at once: each record is stored exactly once (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._pg import temporary_database
from tests.feedback.conftest import NOW, Env


def _worker(env: Env, data: bytes, barrier: object, out: object, http: bool) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    if http:
        out.put(_post_via_app(env, data))  # type: ignore[attr-defined]
        return
    res = env.ingestor().ingest(data)
    out.put((len(res.accepted), sorted(e.reason for e in res.quarantined)))  # type: ignore[attr-defined]


def _post_via_app(env: Env, data: bytes) -> tuple[int, list[str]]:
    from flask import Flask, g

    from mlflow_guard.core.access import Principal
    from mlflow_guard.feedback.http import create_blueprint

    app = Flask("replica")
    app.register_blueprint(
        create_blueprint(env.policy, env.store(), clock=lambda: NOW, register_routes=False)
    )

    @app.before_request
    def _auth() -> None:
        g.guard_principal = Principal("collector")

    resp = app.test_client().post(
        "/api/2.0/mlflow-guard/feedback", data=data, content_type="application/x-ndjson"
    )
    body = resp.get_json()
    return body["accepted"], sorted(r["reason"] for r in body["rejections"])


def _run_twice(env: Env, data: bytes, *, http: bool = False) -> list[tuple[int, list[str]]]:
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(env, data, barrier, out, http)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return sorted(results, reverse=True)


def _batch(env: Env, n: int) -> tuple[bytes, list[bytes]]:
    signers = [env.checkout, env.mobile, env.web]
    lines = [env.line(signers[i % 3], str(i)) for i in range(n)]
    return b"\n".join(lines) + b"\n", lines


def test_concurrent_double_ingestion_stores_each_record_once(env: Env) -> None:
    env.store().dispose()  # create tables before the race
    data, lines = _batch(env, 60)
    results = _run_twice(env, data)
    assert sum(r[0] for r in results) == 60
    stored = env.into.read_bytes().splitlines()
    assert sorted(stored) == sorted(lines)
    replays = [e for e in env.qfile.entries() if e.reason == "replay"]
    assert sorted(e.raw for e in replays) == sorted(lines)


@pytest.fixture(scope="module")
def pg_uri() -> Iterator[str]:
    with temporary_database("guard_feedback") as uri:
        yield uri


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_replicas_store_once_and_refuse_replays(
    make_env: Callable[..., Env], pg_uri: str, tmp_path: Path
) -> None:
    env = make_env(db=pg_uri)
    store = env.store()
    data, lines = _batch(env, 45)
    # two replicas (processes) receive the same batch at the same instant
    results = _run_twice(env, data, http=True)
    assert results[0][0] + results[1][0] == 45
    assert sorted(r["raw"] for r in store.accepted_rows()) == sorted(lines)
    # a later replay to either replica is refused and quarantined
    (again,) = _run_twice(env, lines[0] + b"\n", http=True)[:1]
    assert again == (0, ["replay"])
    rows = store.quarantine_rows()
    assert sum(1 for r in rows if r["reason"] == "replay") == 45 + 2
    assert len(store.accepted_rows()) == 45
    store.dispose()
