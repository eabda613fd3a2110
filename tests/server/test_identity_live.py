"""Tokens and passwords: verified once, cached, and revoked at once on every worker.

Also: every decision is in the audit chain, and a failing audit write denies with 503.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
import requests

from tests.server._server import PASSWORDS, Server
from tests.server.conftest import ADMIN

pytestmark = pytest.mark.slow
GUARD = "/api/2.0/mlflow-guard"
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=5"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def statuses(server: Server, n: int, **kw: object) -> set[int]:
    """Status codes of ``n`` requests on fresh connections (spread over both workers)."""
    return {requests.get(f"{server.url}{SEARCH}", timeout=30, **kw).status_code for _ in range(n)}  # type: ignore[arg-type]


def test_token_works_until_revoked_on_every_worker(guard_server: Server) -> None:
    alice = ("alice", PASSWORDS["alice"])
    r = requests.post(
        f"{guard_server.url}{GUARD}/tokens/create",
        json={"description": "ci"},
        auth=alice,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    token, token_id = r.json()["token"], r.json()["token_id"]
    assert statuses(guard_server, 8, headers=bearer(token)) == {200}
    who = requests.get(f"{guard_server.url}{GUARD}/whoami", headers=bearer(token), timeout=30)
    assert who.json()["user"] == "alice"
    assert who.json()["via"] == f"token:{token_id}"
    listed = requests.get(f"{guard_server.url}{GUARD}/tokens/list", auth=alice, timeout=30).json()
    assert token_id in {t["token_id"] for t in listed["tokens"]}
    assert token not in str(listed)
    # bob may not revoke alice's token
    r = requests.post(
        f"{guard_server.url}{GUARD}/tokens/revoke",
        json={"token_id": token_id},
        auth=("bob", PASSWORDS["bob"]),
        timeout=30,
    )
    assert r.status_code == 403
    assert statuses(guard_server, 4, headers=bearer(token)) == {200}
    r = requests.post(
        f"{guard_server.url}{GUARD}/tokens/revoke",
        json={"token_id": token_id},
        auth=alice,
        timeout=30,
    )
    assert r.status_code == 200
    assert statuses(guard_server, 8, headers=bearer(token)) == {401}


def test_expired_token_stops_working(guard_server: Server) -> None:
    r = requests.post(
        f"{guard_server.url}{GUARD}/tokens/create",
        json={"expires_in_seconds": 3},
        auth=("alice", PASSWORDS["alice"]),
        timeout=30,
    )
    token = r.json()["token"]
    assert statuses(guard_server, 4, headers=bearer(token)) == {200}
    time.sleep(3.5)
    assert statuses(guard_server, 4, headers=bearer(token)) == {401}


def test_tokens_for_others_need_admin(guard_server: Server) -> None:
    r = requests.post(
        f"{guard_server.url}{GUARD}/tokens/create",
        json={"user": "bob"},
        auth=("alice", PASSWORDS["alice"]),
        timeout=30,
    )
    assert r.status_code == 403
    assert "alice may not create a token for bob" in r.json()["message"]
    r = requests.post(
        f"{guard_server.url}{GUARD}/tokens/create", json={"user": "ci-bot"}, auth=ADMIN, timeout=30
    )
    assert r.status_code == 200
    # a token owner without a role is authenticated but authorized for nothing
    r = requests.get(f"{guard_server.url}{SEARCH}", headers=bearer(r.json()["token"]), timeout=30)
    assert r.status_code == 403


def test_password_change_applies_at_once(guard_server: Server) -> None:
    old = ("mallory", PASSWORDS["mallory"])
    new_pw = "mallory-New-Passw0rd-2"
    assert statuses(guard_server, 6, auth=old) == {403}  # authenticated, no role
    try:
        r = requests.patch(
            f"{guard_server.url}{GUARD}/users/update-password",
            json={"username": "mallory", "password": new_pw},
            auth=ADMIN,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert statuses(guard_server, 6, auth=old) == {401}
        assert statuses(guard_server, 2, auth=("mallory", new_pw)) == {403}
    finally:
        requests.patch(
            f"{guard_server.url}{GUARD}/users/update-password",
            json={"username": "mallory", "password": PASSWORDS["mallory"]},
            auth=ADMIN,
            timeout=30,
        ).raise_for_status()


def test_user_management_needs_admin(guard_server: Server) -> None:
    r = requests.post(
        f"{guard_server.url}{GUARD}/users/create",
        json={"username": "eve", "password": "eve-Passw0rd-123"},
        auth=("alice", PASSWORDS["alice"]),
        timeout=30,
    )
    assert r.status_code == 403
    assert "server" in r.json()["message"]
    assert (
        requests.get(
            f"{guard_server.url}{SEARCH}", auth=("eve", "eve-Passw0rd-123"), timeout=30
        ).status_code
        == 401
    )


def test_decisions_are_audited(guard_server: Server) -> None:
    from mlflow_guard.store import GuardStore

    denied = requests.get(
        f"{guard_server.url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "alice-exp"},
        auth=("mallory", PASSWORDS["mallory"]),
        timeout=30,
    )
    allowed = requests.get(
        f"{guard_server.url}{SEARCH}", auth=("bob", PASSWORDS["bob"]), timeout=30
    )
    anon = requests.get(f"{guard_server.url}{SEARCH}", timeout=30)
    assert (denied.status_code, allowed.status_code, anon.status_code) == (403, 200, 401)
    store = GuardStore(f"sqlite:///{guard_server.root}/guard.db")
    try:
        by_id = {e.request_id: e for e in store.iter_audit()}
    finally:
        store.dispose()
    d = by_id[denied.json()["request_id"]]
    assert (d.user, d.outcome, d.resource) == ("mallory", "deny", "experiment:alice-exp")
    assert any("may not read" in r for r in d.reasons)
    a = by_id[allowed.headers["X-Request-Id"]]
    assert (a.user, a.outcome) == ("bob", "allow")
    u = by_id[anon.json()["request_id"]]
    assert (u.user, u.action, u.outcome) == ("-", "authenticate", "deny")


def test_audit_failure_denies_with_503(guard_server: Server) -> None:
    db = guard_server.root / "guard.db"
    bob = ("bob", PASSWORDS["bob"])
    assert requests.get(f"{guard_server.url}{SEARCH}", auth=bob, timeout=30).status_code == 200
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE guard_audit RENAME TO guard_audit_moved")
    con.commit()
    try:
        for _ in range(4):
            r = requests.get(f"{guard_server.url}{SEARCH}", auth=bob, timeout=30)
            assert r.status_code == 503, r.text
            assert "audit log" in r.json()["message"]
            assert "experiments" not in r.json()
    finally:
        con.execute("ALTER TABLE guard_audit_moved RENAME TO guard_audit")
        con.commit()
        con.close()
    assert requests.get(f"{guard_server.url}{SEARCH}", auth=bob, timeout=30).status_code == 200


def test_experiment_rename_applies_at_once_on_every_worker(guard_server: Server) -> None:
    alice = ("alice", PASSWORDS["alice"])
    url = guard_server.url
    exp = requests.post(
        f"{url}/api/2.0/mlflow/experiments/create",
        json={"name": "alice-rn"},
        auth=alice,
        timeout=30,
    ).json()["experiment_id"]

    def get_codes() -> set[int]:
        return {
            requests.get(
                f"{url}/api/2.0/mlflow/experiments/get",
                params={"experiment_id": exp},
                auth=alice,
                timeout=30,
            ).status_code
            for _ in range(6)
        }

    assert get_codes() == {200}  # both workers cache the name
    r = requests.post(
        f"{url}/api/2.0/mlflow/experiments/update",
        json={"experiment_id": exp, "new_name": "secret-rn"},
        auth=ADMIN,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert get_codes() == {403}
