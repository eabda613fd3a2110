"""Two guard replicas on PostgreSQL: concurrent approvals never double count, and a promotion
is applied exactly once. Skipped when PostgreSQL is unreachable, except under ``CI=true``."""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests._pg import admin_connection
from tests.registry.conftest import Env, auth, client_as, create_users, start_registry_server
from tests.registry.conftest import write_keys as make_keys
from tests.registry.test_server_promotion import aliases, new_version
from tests.server._server import Server, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
PG = os.environ.get("MLFLOW_GUARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
API = "/api/2.0/mlflow-guard/promotions"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, Server, str]]:
    """Two guard servers sharing PostgreSQL (MLflow, users, guard state) and artifacts."""
    conn = admin_connection()
    tag = secrets.token_hex(4)
    dbs = [f"guard_reg_mlflow_{tag}", f"guard_reg_state_{tag}"]
    with conn.cursor() as cur:
        for db in dbs:
            cur.execute(f"CREATE DATABASE {db}")
    base = PG.rsplit("/", 1)[0]
    mlflow_uri, state_uri = (f"{base}/{db}" for db in dbs)
    root = tmp_path_factory.mktemp("registry-pg")
    signers = make_keys(root / "a")
    shutil.copytree(root / "a" / "keys", root / "b" / "keys")
    common: dict[str, Any] = {
        "backend_uri": mlflow_uri.replace("postgresql://", "postgresql+psycopg2://", 1),
        "users_db": state_uri,
        "workers": 1,
        "artifacts": str(root / "artifacts"),
    }
    a = start_registry_server(root / "a", state_uri, **common)
    b = start_registry_server(root / "b", state_uri, wait=False, **common)
    try:
        wait_ready(b)
        create_users(a.url)
        yield Env(a, root, signers), b, state_uri
    finally:
        a.stop()
        b.stop()
        with conn.cursor() as cur:
            for db in dbs:
                cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.close()


def _together(calls: list[tuple[str, str, dict[str, Any]]]) -> list[requests.Response]:
    """POST every (url, user, body) at the same moment from its own thread."""
    barrier = threading.Barrier(len(calls))
    out: list[requests.Response | None] = [None] * len(calls)

    def go(i: int) -> None:
        url, user, body = calls[i]
        barrier.wait()
        out[i] = requests.post(url, json=body, auth=auth(user), timeout=120)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]


def test_concurrent_approvals_count_once_and_promote_once(
    replicas: tuple[Env, Server, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env, b, state_uri = replicas
    alice = client_as(env, "alice", monkeypatch)
    name = "fraud-replicas"
    v, _ = new_version(env, alice, name, tmp_path)
    body = {"name": name, "version": v, "target": "alias:production"}
    r = requests.post(f"{env.url}{API}/request", json=body, auth=auth("alice"), timeout=120)
    assert r.status_code == 200, r.text

    # the same approver on both replicas at once: recorded once, the other refused
    first = _together(
        [(f"{env.url}{API}/approve", "bob", body), (f"{b.url}{API}/approve", "bob", body)]
    )
    assert sorted(r.status_code for r in first) == [200, 409], [r.text for r in first]
    assert aliases(alice, name) == {}

    # two different approvers on the two replicas at once: both count, one promotion
    second = _together(
        [(f"{env.url}{API}/approve", "carol", body), (f"{b.url}{API}/approve", "dave", body)]
    )
    assert [r.status_code for r in second] == [200, 200], [r.text for r in second]
    promoted = [r.json()["promoted"] for r in second]
    assert promoted.count(True) == 1, promoted
    assert aliases(alice, name) == {"production": v}

    engine = sa.create_engine(state_uri.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT approver FROM guard_approvals WHERE model = :m ORDER BY approver"),
            {"m": name},
        ).all()
        states = conn.execute(
            sa.text("SELECT state FROM guard_promotions WHERE model = :m"), {"m": name}
        ).all()
        audit = conn.execute(
            sa.text("SELECT count(*) FROM guard_audit WHERE action LIKE :a"),
            {"a": f"promote {name} v{v} -> alias:production"},
        ).scalar()
    engine.dispose()
    assert [r.approver for r in rows] == ["bob", "carol", "dave"]
    assert [s.state for s in states] == ["promoted"]
    assert audit == 1
