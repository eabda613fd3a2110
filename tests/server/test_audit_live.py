"""The audit chain and API tokens through a real guard server (2 workers) and the real CLI.

Concurrent allowed and denied requests land in one linear chain that ``mlflow-guard audit
verify`` accepts; a tampered copy of the server's database is refused with the entry named; a
token made with ``mlflow-guard tokens create`` works as a Bearer token at once and stops working
at once when ``mlflow-guard tokens revoke`` runs.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.server._server import PASSWORDS, Server

pytestmark = pytest.mark.slow

CREATE = "/api/2.0/mlflow/experiments/create"
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=5"


def guard_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlflow_guard.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_concurrent_decisions_form_one_verifiable_chain(
    guard_server: Server, tmp_path: Path
) -> None:
    alice = ("alice", PASSWORDS["alice"])
    bob = ("bob", PASSWORDS["bob"])
    tag = secrets.token_hex(4)

    def call(i: int) -> int:
        if i % 3 == 0:  # bob may read but not create: denied
            r = requests.post(
                f"{guard_server.url}{CREATE}", json={"name": f"bob-{tag}-{i}"}, auth=bob, timeout=60
            )
        elif i % 3 == 1:
            r = requests.post(
                f"{guard_server.url}{CREATE}",
                json={"name": f"alice-{tag}-{i}"},
                auth=alice,
                timeout=60,
            )
        else:
            r = requests.get(f"{guard_server.url}{SEARCH}", auth=alice, timeout=60)
        return r.status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(call, range(30)))
    assert sorted(codes) == [200] * 20 + [403] * 10, codes

    policy = str(guard_server.root / "guard.yaml")
    ok = guard_cli("audit", "verify", "--policy", policy, "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] is True
    assert report["entries"] >= 30

    exported = guard_cli("audit", "export", "--jsonl", "--policy", policy)
    assert exported.returncode == 0, exported.stderr
    entries = [json.loads(x) for x in exported.stdout.splitlines() if '"kind": "entry"' in x]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    mine = [e for e in entries if tag in e["resource"]]
    assert sum(1 for e in mine if e["user"] == "bob" and e["outcome"] == "deny") == 10
    assert sum(1 for e in mine if e["user"] == "alice" and e["outcome"] == "allow") == 10

    # Tamper with a consistent copy (the live database is left alone): the copy is refused.
    copy = tmp_path / "guard-copy.db"
    src = sqlite3.connect(guard_server.root / "guard.db")
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    victim = next(e["seq"] for e in mine if e["outcome"] == "deny")
    dst.execute("UPDATE guard_audit SET outcome = 'allow' WHERE seq = ?", (victim,))
    dst.commit()
    dst.close()
    bad = guard_cli("audit", "verify", "--database-uri", f"sqlite:///{copy}", "--json")
    assert bad.returncode == 1
    problem = json.loads(bad.stdout)["report"]["problem"]
    assert (problem["kind"], problem["seq"]) == ("modified", victim)


def test_cli_token_works_at_once_and_revocation_is_immediate(guard_server: Server) -> None:
    policy = str(guard_server.root / "guard.yaml")
    made = guard_cli("tokens", "create", "alice", "--expires", "1h", "--policy", policy, "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    bearer = {"Authorization": f"Bearer {created['secret']}"}
    for _ in range(4):  # reach both workers
        r = requests.get(f"{guard_server.url}{SEARCH}", headers=bearer, timeout=60)
        assert r.status_code == 200, r.text
    revoked = guard_cli("tokens", "revoke", created["token_id"], "--policy", policy)
    assert revoked.returncode == 0, revoked.stderr
    for _ in range(4):
        r = requests.get(f"{guard_server.url}{SEARCH}", headers=bearer, timeout=60)
        assert r.status_code == 401, r.text
    forged = {"Authorization": f"Bearer {created['secret'][:-2]}xx"}
    assert (
        requests.get(f"{guard_server.url}{SEARCH}", headers=forged, timeout=60).status_code == 401
    )
