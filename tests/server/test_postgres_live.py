"""PostgreSQL: MLflow's backend store, the user store and guard state on PostgreSQL, and two
guard server processes sharing them. A token or password change made through one is honoured
by the other at once; concurrent traffic to both leaves one linear audit chain.

Skipped when PostgreSQL is unreachable, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests._pg import admin_connection
from tests.server._server import PASSWORDS, Server, start_guard, wait_ready
from tests.server.conftest import ADMIN, create_users

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
PG = os.environ.get("MLFLOW_GUARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
GUARD = "/api/2.0/mlflow-guard"
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=5"


@pytest.fixture(scope="module")
def pg_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server, str]]:
    """Two guard servers (one worker each) on shared PostgreSQL databases and artifacts."""
    conn = admin_connection()
    tag = secrets.token_hex(4)
    dbs = [f"guard_srv_mlflow_{tag}", f"guard_srv_state_{tag}"]
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        for db in dbs:
            cur.execute(f"CREATE DATABASE {db}")
    base = PG.rsplit("/", 1)[0]
    mlflow_uri, state_uri = (f"{base}/{db}" for db in dbs)
    mlflow_uri = mlflow_uri.replace("postgresql://", "postgresql+psycopg2://", 1)
    root = tmp_path_factory.mktemp("pg")
    common = {
        "backend_uri": mlflow_uri,
        "guard_db": state_uri,
        "users_db": state_uri,
        "workers": 1,
        "artifacts": str(root / "artifacts"),
    }
    a = start_guard(Path(root / "a"), **common)  # type: ignore[arg-type]
    b = start_guard(Path(root / "b"), wait=False, **common)  # type: ignore[arg-type]
    try:
        wait_ready(b)
        create_users(a.url)
        yield a, b, state_uri
    finally:
        a.stop()
        b.stop()
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            for db in dbs:
                cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.close()  # type: ignore[attr-defined]


def test_users_and_tokens_are_shared_and_revocation_is_immediate(
    pg_pair: tuple[Server, Server, str],
) -> None:
    a, b, _ = pg_pair
    alice = ("alice", PASSWORDS["alice"])
    assert requests.get(f"{b.url}{GUARD}/whoami", auth=alice, timeout=30).json()["user"] == "alice"
    r = requests.post(f"{a.url}{GUARD}/tokens/create", json={}, auth=alice, timeout=30)
    token, token_id = r.json()["token"], r.json()["token_id"]
    hdr = {"Authorization": f"Bearer {token}"}
    for s in (a, b, a, b):
        assert requests.get(f"{s.url}{SEARCH}", headers=hdr, timeout=30).status_code == 200
    r = requests.post(
        f"{b.url}{GUARD}/tokens/revoke", json={"token_id": token_id}, auth=alice, timeout=30
    )
    assert r.status_code == 200
    for s in (a, b):
        assert requests.get(f"{s.url}{SEARCH}", headers=hdr, timeout=30).status_code == 401


def test_workflow_across_replicas(pg_pair: tuple[Server, Server, str]) -> None:
    a, b, _ = pg_pair
    alice = ("alice", PASSWORDS["alice"])
    exp = requests.post(
        f"{a.url}/api/2.0/mlflow/experiments/create",
        json={"name": "alice-pg"},
        auth=alice,
        timeout=30,
    ).json()["experiment_id"]
    run = requests.post(
        f"{b.url}/api/2.0/mlflow/runs/create",
        json={"experiment_id": exp, "user_id": "bob"},
        auth=alice,
        timeout=30,
    ).json()["run"]
    assert run["info"]["user_id"] == "alice"
    up = f"/api/2.0/mlflow-artifacts/artifacts/{exp}/{run['info']['run_id']}/artifacts/a.txt"
    assert requests.put(f"{a.url}{up}", data=b"pg", auth=alice, timeout=30).status_code == 200
    assert requests.get(f"{b.url}{up}", auth=alice, timeout=30).content == b"pg"
    r = requests.get(f"{b.url}{up}", auth=("mallory", PASSWORDS["mallory"]), timeout=30)
    assert r.status_code == 403
    r = requests.post(
        f"{a.url}/api/2.0/mlflow/experiments/create", json={"name": "x-pg"}, auth=alice, timeout=30
    )
    assert r.status_code == 403


def test_concurrent_traffic_keeps_one_linear_audit_chain(
    pg_pair: tuple[Server, Server, str],
) -> None:
    from mlflow_guard.core.audit import verify_chain
    from mlflow_guard.store import GuardStore

    a, b, state_uri = pg_pair
    users = [("bob", PASSWORDS["bob"]), ("mallory", PASSWORDS["mallory"]), ADMIN]

    def hit(i: int) -> int:
        s = (a, b)[i % 2]
        return requests.get(f"{s.url}{SEARCH}", auth=users[i % 3], timeout=60).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(hit, range(60)))
    assert set(codes) == {200, 403}
    store = GuardStore(state_uri)
    try:
        entries = list(store.iter_audit())
        report = verify_chain(entries, head=store.head())
    finally:
        store.dispose()
    assert report.ok, report.to_json()
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
