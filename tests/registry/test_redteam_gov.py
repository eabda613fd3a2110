"""Red-team tests of the guard REST API: API tokens, user management, promotions, reviewer pages.

One real guard server (SQLite, 2 workers) for the module, the registry policy of
:mod:`tests.registry.conftest`, real HTTP clients. Each attack asserts the status, the reason in
the message and that nothing changed (tokens, audit head, registry).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from mlflow_guard.store import GuardStore
from tests.registry.conftest import Env, auth, running_registry

G = "/api/2.0/mlflow-guard"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A server of its own: these tests delete users and revoke tokens."""
    with running_registry(tmp_path_factory.mktemp("redteam-gov")) as env:
        yield env


@pytest.fixture(scope="module")
def store(env: Env) -> Iterator[GuardStore]:
    s = GuardStore(f"sqlite:///{env.root}/guard.db")
    yield s
    s.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(env: Env, path: str, json: object, **kw: object) -> requests.Response:
    return requests.post(f"{env.url}{G}{path}", json=json, timeout=60, **kw)  # type: ignore[arg-type]


def new_user(env: Env, name: str) -> tuple[str, str]:
    pw = f"{name}-Passw0rd-1"
    r = post(env, "/users/create", {"username": name, "password": pw}, auth=auth("admin"))
    assert r.status_code == 200, r.text
    return name, pw


def token_for(env: Env, creds: tuple[str, str], **body: object) -> dict[str, str]:
    r = post(env, "/tokens/create", body, auth=creds)
    assert r.status_code == 200, r.text
    return dict(r.json())


def whoami(env: Env, **kw: object) -> requests.Response:
    return requests.get(f"{env.url}{G}/whoami", timeout=60, **kw)  # type: ignore[arg-type]


# -- API tokens -------------------------------------------------------------------------------


def test_deleting_a_user_revokes_their_tokens(env: Env, store: GuardStore) -> None:
    creds = new_user(env, "eve")
    tok = token_for(env, creds, description="eve's laptop")
    assert whoami(env, headers=bearer(tok["token"])).json()["user"] == "eve"
    r = requests.delete(
        f"{env.url}{G}/users/delete", json={"username": "eve"}, auth=auth("admin"), timeout=60
    )
    assert r.status_code == 200, r.text
    # Every worker refuses the token at once (fresh connections spread over both workers).
    for _ in range(6):
        r = whoami(env, headers=bearer(tok["token"]))
        assert r.status_code == 401, r.text
        assert "unknown, expired or revoked" in r.json()["message"]
    info = store.get_token(tok["token_id"])
    assert info is not None
    assert info.status() == "revoked"
    # A new account of the same name does not inherit the old credentials.
    new_user(env, "eve")
    assert whoami(env, headers=bearer(tok["token"])).status_code == 401


def test_api_token_expires_by_default(env: Env, store: GuardStore) -> None:
    tok = token_for(env, auth("carol"))
    assert tok["expires_at"] is not None
    info = store.get_token(tok["token_id"])
    assert info is not None
    assert info.expires_at is not None
    days = (info.expires_at - info.created_at).days
    assert 89 <= days <= 90


def test_token_cannot_mint_a_longer_lived_token(env: Env, store: GuardStore) -> None:
    tok = token_for(env, auth("carol"), expires_in_seconds=3600)
    before = {t.token_id for t in store.list_tokens("carol")}
    for body in ({}, {"expires_in_seconds": 7200}):
        r = post(env, "/tokens/create", body, headers=bearer(tok["token"]))
        assert r.status_code == 403, r.text
        assert "outlive the token" in r.json()["message"]
    assert {t.token_id for t in store.list_tokens("carol")} == before
    # A shorter-lived one (e.g. for a single CI job) is fine.
    r = post(env, "/tokens/create", {"expires_in_seconds": 600}, headers=bearer(tok["token"]))
    assert r.status_code == 200, r.text


def test_token_cannot_change_its_owners_password(env: Env) -> None:
    creds = new_user(env, "frank")
    tok = token_for(env, creds)
    r = requests.patch(
        f"{env.url}{G}/users/update-password",
        json={"username": "frank", "password": "Stolen-Passw0rd-9"},
        headers=bearer(tok["token"]),
        timeout=60,
    )
    assert r.status_code == 403, r.text
    assert "password" in r.json()["message"]
    assert "Basic" in r.json()["message"]
    assert whoami(env, auth=creds).status_code == 200
    assert whoami(env, auth=("frank", "Stolen-Passw0rd-9")).status_code == 401


@pytest.mark.parametrize("seconds", [-5, 0, 10**15, "soon"])
def test_bad_token_expiry_is_400_not_500(env: Env, store: GuardStore, seconds: object) -> None:
    before = len(store.list_tokens("carol"))
    r = post(env, "/tokens/create", {"expires_in_seconds": seconds}, auth=auth("carol"))
    assert r.status_code == 400, r.text
    assert "expires_in_seconds" in r.json()["message"]
    assert len(store.list_tokens("carol")) == before


def test_another_users_token_id_with_my_secret_is_refused(env: Env) -> None:
    mine = token_for(env, auth("carol"))
    theirs = token_for(env, auth("bob"))
    forged = mine["token"].replace(mine["token_id"], theirs["token_id"])
    r = whoami(env, headers=bearer(forged))
    assert r.status_code == 401
    assert "unknown, expired or revoked" in r.json()["message"]


def test_token_secret_is_not_written_to_the_server_log(env: Env) -> None:
    tok = token_for(env, auth("carol"))
    assert whoami(env, headers=bearer(tok["token"])).status_code == 200
    assert whoami(env, headers=bearer(tok["token"] + "x")).status_code == 401
    secret_part = tok["token"].rsplit("_", 1)[1]
    assert secret_part not in env.server.log.read_text(errors="replace")


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("delete", "/users/delete", {"username": "nobody-here"}, 404),
        ("post", "/users/create", {"username": "bob", "password": "x-Passw0rd-1"}, 409),
        ("patch", "/users/update-password", {"username": "nobody-here", "password": "y"}, 404),
    ],
)
def test_user_admin_errors_are_answered_not_500(
    env: Env, method: str, path: str, body: dict[str, str], status: int
) -> None:
    r = requests.request(method, f"{env.url}{G}{path}", json=body, auth=auth("admin"), timeout=60)
    assert r.status_code == status, r.text
    assert r.json()["message"].startswith("mlflow-guard:")
    assert body["username"] in r.json()["message"]
    assert "scrypt" not in r.text, "the user store's SQL error (password hash) must not leak"
    assert "INSERT" not in r.text
    assert whoami(env, auth=auth("bob")).status_code == 200


# -- promotion API and reviewer pages ---------------------------------------------------------


def _open_request(env: Env, model: str) -> int:
    r = post(
        env,
        "/promotions/request",
        {
            "name": model,
            "version": "1",
            "target": "production",
            "comment": "<img src=x onerror=alert(1)>",
        },
        auth=auth("alice"),
    )
    assert r.status_code == 200, r.text
    return int(r.json()["request"]["id"])


def test_status_by_id_does_not_name_an_unreadable_model(env: Env) -> None:
    req_id = _open_request(env, "secret-fraud-model")
    creds = new_user(env, "outsider")  # authenticated, no role: may read nothing
    r = requests.get(
        f"{env.url}{G}/promotions/status", params={"id": req_id}, auth=creds, timeout=60
    )
    assert r.status_code == 403, r.text
    assert "secret-fraud-model" not in r.text
    assert f"request {req_id}" in r.json()["message"]
    r = requests.get(
        f"{env.url}{G}/promotions/list", params={"state": "all"}, auth=creds, timeout=60
    )
    assert r.status_code == 200
    assert "secret-fraud-model" not in r.text


def _page(env: Env, user: str) -> requests.Response:
    r = requests.get(f"{env.url}/guard/", auth=auth(user), timeout=120)
    assert r.status_code == 200, r.text
    return r


def test_reviewer_page_escapes_request_fields_and_forbids_framing(env: Env) -> None:
    _open_request(env, "page-model")
    r = _page(env, "carol")
    assert "<img src=x" not in r.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in r.text
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_csrf_token_of_another_reviewer_is_refused(env: Env, store: GuardStore) -> None:
    import re

    req_id = _open_request(env, "csrf-model")
    page = _page(env, "carol").text
    m = re.search(rf'data-id="{req_id}" data-csrf="([0-9a-f]{{64}})"', page)
    assert m is not None, "carol's page shows the request with her CSRF token"
    head = store.head()
    url = f"{env.url}/guard/decide"
    # bob (a reviewer) replays carol's token: it is bound to carol.
    r = requests.post(
        url,
        json={"id": req_id, "decision": "approve", "csrf": m.group(1)},
        auth=auth("bob"),
        timeout=60,
    )
    assert r.status_code == 403, r.text
    assert "CSRF" in r.json()["message"]
    # A cross-site form post is not JSON.
    r = requests.post(
        url,
        data={"id": req_id, "decision": "approve", "csrf": m.group(1)},
        auth=auth("carol"),
        timeout=60,
    )
    assert r.status_code in (400, 403, 415), r.text
    status = requests.get(
        f"{env.url}{G}/promotions/status", params={"id": req_id}, auth=auth("carol"), timeout=120
    ).json()["status"]
    assert status["counted"] == []
    assert status["rejections"] == []
    assert store.head()[0] > head[0]  # the refusal was audited
