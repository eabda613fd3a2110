"""The guard layer in process (a minimal ASGI driver) around MLflow's real scoring app."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlflow_guard.serving import ServeOptions, build_app, load_verified, verify_response
from mlflow_guard.serving.app import LoadedModel, uvicorn_kwargs
from mlflow_guard.serving.auth import RevisionReader, TokenAuth
from mlflow_guard.serving.middleware import GuardLayer
from mlflow_guard.serving.signing import ResponseSigner
from mlflow_guard.store import GuardStore
from mlflow_guard.tls import TLSConfig
from tests.serving.conftest import Setup, public_key

BODY = json.dumps({"inputs": [[5.1, 3.5, 1.4, 0.2]]}).encode()


@dataclass
class Answer:
    """What the driver collected, shaped like a ``requests.Response`` for verify_response."""

    status_code: int
    headers: dict[str, str]
    content: bytes
    request: Any


@dataclass
class Req:
    method: str
    url: str
    body: bytes
    headers: dict[str, str]


def call(app: Any, token: str | None, body: bytes = BODY, path: str = "/invocations") -> Answer:
    headers = [(b"content-type", b"application/json")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 1),
        "client": ("127.0.0.1", 2),
        "root_path": "",
    }
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)] or [b""]

        async def receive() -> dict[str, Any]:
            if chunks:
                c = chunks.pop(0)
                return {"type": "http.request", "body": c, "more_body": bool(chunks)}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(m: dict[str, Any]) -> None:
            sent.append(m)

        await app(scope, receive, send)

    asyncio.run(run())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]  # once
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    hdrs = {k.decode(): v.decode() for k, v in start["headers"]}
    return Answer(start["status"], hdrs, content, Req("POST", "http://x" + path, body, {}))


@pytest.fixture(scope="module")
def loaded(setup: Setup) -> LoadedModel:
    return load_verified(str(setup.model_dir), setup.policy)


def _store(setup: Setup) -> GuardStore:
    return GuardStore(setup.database_uri)


def test_rate_limit_429_signed(setup: Setup, loaded: LoadedModel) -> None:
    store = _store(setup)
    opts = ServeOptions(signing_key=setup.response_key.key, rate=1 / 3600)
    app = build_app(loaded, TokenAuth(store.verify_token, store.revision), opts)
    assert call(app, setup.tokens["alice"]).status_code == 200
    r = call(app, setup.tokens["alice"])
    assert r.status_code == 429
    assert json.loads(r.content)["error_code"] == "RATE_LIMITED"
    assert int(r.headers["retry-after"]) == 3600
    verify_response(r, public_key(setup.response_key))
    assert call(app, setup.tokens["carol"]).status_code == 200  # per client


def test_oversized_body_413(setup: Setup, loaded: LoadedModel) -> None:
    store = _store(setup)
    opts = ServeOptions(signing_key=setup.response_key.key, max_body=1000)
    app = build_app(loaded, TokenAuth(store.verify_token, store.revision), opts)
    r = call(app, setup.tokens["alice"], body=b"x" * 5000)
    assert r.status_code == 413
    assert b"predictions" not in r.content


def test_store_down_is_503_not_a_prediction(
    setup: Setup, loaded: LoadedModel, tmp_path: Path
) -> None:
    broken = GuardStore(f"sqlite:///{tmp_path}/nope/guard.db")
    opts = ServeOptions(signing_key=setup.response_key.key)
    app = build_app(loaded, TokenAuth(broken.verify_token, broken.revision), opts)
    r = call(app, setup.tokens["alice"])
    assert r.status_code == 503
    assert b"predictions" not in r.content
    assert r.headers["retry-after"] == "5"


def test_unsigned_mode_still_names_the_model(setup: Setup, loaded: LoadedModel) -> None:
    store = _store(setup)
    app = build_app(loaded, TokenAuth(store.verify_token, store.revision), ServeOptions())
    r = call(app, setup.tokens["alice"])
    assert r.status_code == 200
    assert "signature" not in r.headers
    assert r.headers["x-model-root-digest"] == f"sha256:{loaded.verified.root_digest}"


def test_uvicorn_tls_arguments(tmp_path: Path) -> None:
    assert uvicorn_kwargs(TLSConfig()) == {}
    kw = uvicorn_kwargs(TLSConfig(tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"))
    assert kw["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert kw["ssl_ca_certs"] == str(tmp_path / "ca.pem")


def test_store_lost_after_caching_is_503_signed(
    setup: Setup, loaded: LoadedModel, tmp_path: Path
) -> None:
    db = tmp_path / "guard.db"
    shutil.copy(setup.database_uri.removeprefix("sqlite:///"), db)
    store = GuardStore(f"sqlite:///{db}")
    reader = RevisionReader.for_uri(f"sqlite:///{db}", hold=True)
    opts = ServeOptions(signing_key=setup.response_key.key)
    app = build_app(loaded, TokenAuth(store.verify_token, reader, inline=True), opts)
    assert call(app, setup.tokens["alice"]).status_code == 200  # verified, now cached
    with sqlite3.connect(db) as c:
        c.execute("DROP TABLE guard_revision")
    r = call(app, setup.tokens["alice"])
    assert r.status_code == 503
    assert json.loads(r.content) == {
        "error_code": "TEMPORARILY_UNAVAILABLE",
        "message": "cannot check the token now",
    }
    assert b"predictions" not in r.content
    verify_response(r, public_key(setup.response_key))


def test_revoked_token_refused_at_the_next_request(
    setup: Setup, loaded: LoadedModel, tmp_path: Path
) -> None:
    db = tmp_path / "guard.db"
    shutil.copy(setup.database_uri.removeprefix("sqlite:///"), db)
    store = GuardStore(f"sqlite:///{db}")
    token_id, secret = store.create_token("dave", None)
    reader = RevisionReader.for_uri(f"sqlite:///{db}", hold=True)
    opts = ServeOptions(signing_key=setup.response_key.key)
    app = build_app(loaded, TokenAuth(store.verify_token, reader, inline=True), opts)
    assert [call(app, secret).status_code for _ in range(3)] == [200, 200, 200]
    assert store.revoke_token(token_id)
    r = call(app, secret)
    assert r.status_code == 401
    assert json.loads(r.content)["error_code"] == "UNAUTHENTICATED"
    verify_response(r, public_key(setup.response_key))


def test_one_content_type_is_sent_and_signed(setup: Setup, tmp_path: Path) -> None:
    async def two_types(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain"), (b"Content-Type", b"text/html")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"pong", "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})

    store = GuardStore(f"sqlite:///{tmp_path}/guard.db")
    layer = GuardLayer(
        app=two_types,
        auth=TokenAuth(store.verify_token, None),
        signer=ResponseSigner(setup.response_key.key, "ab" * 32),
        model_root_digest="ab" * 32,
    )
    r = call(layer, None, path="/ping")
    assert r.status_code == 200
    assert r.content == b"pong!"
    assert r.headers["content-type"] == "text/plain"  # the driver keeps the last duplicate
    assert r.headers["content-length"] == "5"
    verify_response(r, public_key(setup.response_key), expected_model_digest="ab" * 32)


def test_run_freezes_startup_objects_then_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    import uvicorn

    from mlflow_guard.serving import app as serving_app

    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kw: Any) -> None:
        seen.update(kw, frozen=gc.get_freeze_count())

    monkeypatch.setattr(uvicorn, "run", fake_run)
    try:
        serving_app.run(object(), "127.0.0.1", 5999, TLSConfig())  # type: ignore[arg-type]
    finally:
        gc.unfreeze()
    assert seen["frozen"] > 1000
    assert seen["access_log"] is False
    assert seen["port"] == 5999


# -- the answer leaves when the app's last body message arrives, after the checks ------------


def _layer(setup: Setup, app: Any, db: Path, **kw: Any) -> tuple[GuardLayer, GuardStore]:
    shutil.copy(setup.database_uri.removeprefix("sqlite:///"), db)
    store = GuardStore(f"sqlite:///{db}")
    reader = RevisionReader.for_uri(f"sqlite:///{db}", hold=True)
    layer = GuardLayer(
        app=app,
        auth=TokenAuth(store.verify_token, reader, inline=True),
        signer=ResponseSigner(setup.response_key.key, "ab" * 32),
        model_root_digest="ab" * 32,
        **kw,
    )
    return layer, store


async def _answer(send: Any, body: bytes = b'{"predictions": [0]}', status: int = 200) -> None:
    start = {"type": "http.response.start", "status": status, "headers": []}
    await send(start | {"headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def test_answer_sent_before_the_app_returns(setup: Setup, tmp_path: Path) -> None:
    timeline: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _answer(send)
        timeline.append("app still running after its last body message")

    layer, _ = _layer(setup, app, tmp_path / "guard.db")
    outer = layer.__call__

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        async def send_and_note(m: Any) -> None:
            timeline.append(m["type"])
            await send(m)

        await outer(scope, receive, send_and_note)

    r = call(recording, setup.tokens["alice"])
    assert r.status_code == 200
    assert timeline == [
        "http.response.start",
        "http.response.body",
        "app still running after its last body message",
    ]
    verify_response(r, public_key(setup.response_key), expected_model_digest="ab" * 32)


def test_token_revoked_while_predicting_gets_401_not_the_answer(
    setup: Setup, tmp_path: Path
) -> None:
    holder: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if holder.get("revoke"):
            assert holder["store"].revoke_token(holder["token_id"])
        await _answer(send)

    layer, store = _layer(setup, app, tmp_path / "guard.db")
    token_id, secret = store.create_token("erin", None)
    holder.update(store=store, token_id=token_id)
    assert call(layer, secret).status_code == 200  # verified and cached
    holder["revoke"] = True
    r = call(layer, secret)
    assert r.status_code == 401
    assert json.loads(r.content)["error_code"] == "UNAUTHENTICATED"
    assert b"predictions" not in r.content
    verify_response(r, public_key(setup.response_key))


def test_budget_overrun_inside_the_app_gets_429(setup: Setup, tmp_path: Path) -> None:
    from mlflow_guard.serving.hardening import current_charge
    from mlflow_guard.serving.limits import QueryBudget

    async def app(scope: Any, receive: Any, send: Any) -> None:
        charge = current_charge.get()
        assert charge is not None
        try:
            charge(3)  # what HardenedModel.predict does per input row
        except Exception:  # MLflow answers an error of its own
            await _answer(send, b'{"error_code": "BAD_REQUEST"}', status=400)
            return
        await _answer(send)

    layer, _ = _layer(setup, app, tmp_path / "guard.db", budget=QueryBudget(4, 3600))
    assert call(layer, setup.tokens["alice"]).status_code == 200
    r = call(layer, setup.tokens["alice"])  # 3 + 3 > 4
    assert r.status_code == 429
    assert json.loads(r.content)["error_code"] == "QUOTA_EXCEEDED"
    assert "asks for 3" in json.loads(r.content)["message"]
    verify_response(r, public_key(setup.response_key))


def test_app_failing_after_its_answer_sends_nothing_more(setup: Setup, tmp_path: Path) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _answer(send)
        raise RuntimeError("teardown failed")

    layer, _ = _layer(setup, app, tmp_path / "guard.db")
    r = call(layer, setup.tokens["alice"])  # call() checks: one start, one body
    assert r.status_code == 200
    assert r.content == b'{"predictions": [0]}'
    verify_response(r, public_key(setup.response_key))


def test_app_failing_before_its_answer_gets_a_signed_500(setup: Setup, tmp_path: Path) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("model crashed")

    layer, _ = _layer(setup, app, tmp_path / "guard.db")
    r = call(layer, setup.tokens["alice"])
    assert r.status_code == 500
    assert json.loads(r.content)["error_code"] == "INTERNAL_ERROR"
    assert b"partial" not in r.content
    verify_response(r, public_key(setup.response_key))


def test_an_answer_captured_after_an_interrupted_check_is_checked_again(
    setup: Setup, tmp_path: Path
) -> None:
    from mlflow_guard.serving.middleware import _Buffered

    layer, _ = _layer(setup, _answer, tmp_path / "guard.db")
    sent: list[dict[str, Any]] = []
    checks = {"n": 0}

    async def send(m: dict[str, Any]) -> None:
        sent.append(m)

    async def gate() -> tuple[int, str, str, int | None] | None:
        checks["n"] += 1
        if checks["n"] == 1:
            raise asyncio.CancelledError  # e.g. the app's own timeout cancelled its send
        return (401, "UNAUTHENTICATED", "invalid, expired or revoked token", None)

    async def scenario() -> None:
        out = _Buffered(layer, {"method": "POST", "path": "/invocations"}, BODY, send)
        out.gate = gate
        start = {"type": "http.response.start", "status": 200, "headers": []}
        final = {"type": "http.response.body", "body": b'{"predictions": [0]}'}
        await out.capture(start)
        with pytest.raises(asyncio.CancelledError):
            await out.capture(final)
        assert sent == []
        await out.capture(start)  # the app answers again
        await out.capture(final)
        await out.finish()

    asyncio.run(scenario())
    assert checks["n"] == 2
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 401
    assert b"predictions" not in sent[1]["body"]
