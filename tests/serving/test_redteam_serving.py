"""Red team: a real ``mlflow-guard serve`` on 127.0.0.1 against hostile HTTP requests.

Raw ``http.client`` requests where ``requests`` would normalise the attack away (repeated
headers). Every refusal is asserted with its status, its reason, the absence of a prediction,
and (for the budget) that nothing was spent.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from mlflow_guard.core.errors import SignatureInvalid
from mlflow_guard.serving import verify_response
from mlflow_guard.store import GuardStore
from tests.serving.conftest import ServeProcess, Setup, public_key, start_serve

pytestmark = pytest.mark.slow

ROW = [5.1, 3.5, 1.4, 0.2]
BUDGET = 6


@pytest.fixture(scope="module")
def plain(setup: Setup) -> Iterator[ServeProcess]:
    """A guarded server on plain HTTP (loopback), signed responses, a budget of 6 rows."""
    args = ["--signing-key", str(setup.response_key.private), "--budget", str(BUDGET)]
    proc = start_serve(setup.model_dir, setup.policy, args, setup.root / "redteam-serve.log")
    try:
        yield proc
    finally:
        proc.stop()


def raw(
    server: ServeProcess,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    """Send exactly these header lines (repeats kept); return status, headers, body."""
    u = urlsplit(server.url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=20)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _json(rows: int = 1) -> bytes:
    return json.dumps({"inputs": [ROW] * rows}).encode()


CT = ("Content-Type", "application/json")


def test_two_authorization_headers_are_refused(plain: ServeProcess, setup: Setup) -> None:
    """Authorization is a singleton field: with two, a proxy and the guard may each believe
    another caller (identity, limits and budget charged to the wrong user)."""
    alice, bob = setup.tokens["alice"], setup.tokens["bob"]
    for pair in ((alice, "nonsense"), ("nonsense", alice), (alice, bob)):
        headers = [CT, *(("Authorization", f"Bearer {t}") for t in pair)]
        status, hdrs, body = raw(plain, "/invocations", headers, _json())
        assert status == 401, pair
        assert json.loads(body) == {
            "error_code": "UNAUTHENTICATED",
            "message": "more than one Authorization header",
        }
        assert "signature" in hdrs
    status, _, body = raw(
        plain, "/invocations", [CT, ("Authorization", f"Bearer {alice}")], _json()
    )
    assert status == 200
    assert b"predictions" in body


def test_token_outside_the_authorization_header_is_not_accepted(
    plain: ServeProcess, setup: Setup
) -> None:
    alice = setup.tokens["alice"]
    cases = [
        ("/invocations?access_token=" + alice, [CT]),
        ("/invocations?token=" + alice, [CT]),
        ("/invocations", [CT, ("X-Authorization", f"Bearer {alice}")]),
        ("/invocations", [CT, ("Authorization", f"Basic {alice}")]),
        ("/invocations", [CT, ("Authorization", alice)]),
        ("/invocations", [CT, ("Authorization", "Bearer")]),
    ]
    for path, headers in cases:
        status, _, body = raw(plain, path, headers, _json())
        assert status == 401, (path, headers)
        assert json.loads(body)["error_code"] == "UNAUTHENTICATED"
        assert b"predictions" not in body
    # The scheme is case-insensitive (RFC 9110 §11.1): not a bypass, the same check.
    status, _, body = raw(
        plain, "/invocations", [CT, ("Authorization", f"bEARER {alice}")], _json()
    )
    assert status == 200
    assert b"predictions" in body


def test_only_ping_and_health_are_open(plain: ServeProcess) -> None:
    for method, path in [
        ("GET", "/version"),
        ("GET", "/metrics"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("POST", "/invocations/"),
        ("POST", "//invocations"),
        ("POST", "/ping/../invocations"),
        ("POST", "/%69nvocations"),
        ("POST", "/Ping"),
        ("GET", "/health/"),
    ]:
        status, hdrs, body = raw(plain, path, [CT], _json(), method=method)
        assert status == 401, (method, path)
        assert json.loads(body)["error_code"] == "UNAUTHENTICATED"
        assert "signature" in hdrs
    for path in ("/ping", "/health"):
        status, _, body = raw(plain, path, [], method="GET")
        assert status == 200
        assert b"predictions" not in body
    status, _, body = raw(plain, "/ping", [CT], _json(), method="POST")  # no predict there
    assert status == 405
    assert b"predictions" not in body


def test_many_tokens_of_one_user_share_one_budget(plain: ServeProcess, setup: Setup) -> None:
    store = GuardStore(setup.database_uri)
    try:
        secrets = [store.create_token("erin", None)[1] for _ in range(3)]
    finally:
        store.dispose()
    first = [("Authorization", f"Bearer {secrets[0]}"), CT]
    status, _, body = raw(plain, "/invocations", first, _json(BUDGET))
    assert status == 200
    assert b"predictions" in body
    for s in secrets[1:]:
        status, _, body = raw(
            plain, "/invocations", [("Authorization", f"Bearer {s}"), CT], _json()
        )
        assert status == 429
        assert json.loads(body)["error_code"] == "QUOTA_EXCEEDED"
    # another user is not charged for erin's spending
    alice = [("Authorization", f"Bearer {setup.tokens['carol']}"), CT]
    assert raw(plain, "/invocations", alice, _json())[0] == 200


def test_signed_answer_does_not_verify_for_another_request(
    plain: ServeProcess, setup: Setup
) -> None:
    import requests

    s = plain.session(setup.tokens["alice"])
    r = s.post(plain.url + "/invocations", json={"inputs": [ROW]}, timeout=20)
    assert r.status_code == 200
    pub = public_key(setup.response_key)
    verify_response(r, pub)
    other = requests.Request("POST", plain.url + "/invocations", json={"inputs": [[0, 0, 0, 0]]})
    r.request = other.prepare()
    with pytest.raises(SignatureInvalid, match="request"):
        verify_response(r, pub)
