"""The ASGI layer in front of MLflow's scoring app: authenticate, limit, sign.

Order per request: read the body (bounded) → ``/ping`` and ``/health`` pass without a token;
every other path needs one ``Authorization: Bearer mlg_…`` valid in the guard store (401 otherwise,
503 when the store cannot answer: fail closed; see :mod:`mlflow_guard.serving.auth`) → rate
limit (429) → budget pre-check on ``/invocations`` (429) → MLflow's app, whose model wrapper
charges the budget per input row (429 when a request asks for more than is left, before
predicting) → when the app sends its last body message, the token is confirmed against the
store's current revision and the budget outcome checked (401/503/429 replace the answer) →
the buffered response is digested, signed (every status, including 401/429/503) and sent,
once, without waiting for the app's own teardown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from mlflow_guard.serving import signing
from mlflow_guard.serving.auth import Authenticated, TokenAuth
from mlflow_guard.serving.hardening import current_charge
from mlflow_guard.serving.limits import Denial, QueryBudget, RateLimiter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/ping", "/health"})
PREDICT_PATH = "/invocations"
DEFAULT_MAX_BODY = 32 * 1024 * 1024
_STRIP = {
    b"content-digest",
    b"signature",
    b"signature-input",
    b"x-model-root-digest",
    b"x-request-content-digest",
    b"content-length",
}
_UNAVAILABLE = (503, "TEMPORARILY_UNAVAILABLE", "cannot check the token now", 5)
_UNAUTHENTICATED = (401, "UNAUTHENTICATED", "invalid, expired or revoked token", None)
log = logging.getLogger(__name__)


class BudgetExhausted(Exception):
    """Raised inside the model wrapper; the middleware turns it into a 429."""


@dataclass
class _Call:
    auth: Authenticated
    denial: Denial | None = None

    @property
    def client(self) -> str:
        return self.auth.user


@dataclass
class GuardLayer:
    """ASGI middleware: token auth, per-client limits, response signing.

    Args:
        app: MLflow's scoring app (around the verified, loaded model).
        auth: bearer-token authentication against the guard store.
        signer: signs every response; ``None`` only when unsigned responses were asked for.
        rate: request rate limiter, or ``None``.
        budget: prediction budget, or ``None``.
        model_root_digest: hex OMS root digest (sent even when unsigned).
        max_body: largest accepted request body in bytes (413 beyond).
        model_trust: returns why the model may no longer be served (its signing key revoked
            or expired, the policy broken), or ``None``; every request, ``/ping`` and
            ``/health`` included, is then answered 503 with that reason
            (:class:`~mlflow_guard.serving.model_trust.ModelKeyWatch`).
    """

    app: ASGIApp
    auth: TokenAuth
    signer: signing.ResponseSigner | None
    model_root_digest: str
    rate: RateLimiter | None = None
    budget: QueryBudget | None = None
    max_body: int = DEFAULT_MAX_BODY
    model_trust: Callable[[], str | None] | None = None
    model_header: tuple[bytes, bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.model_header = (
            signing.MODEL_HEADER.lower().encode("ascii"),
            f"sha256:{self.model_root_digest}".encode("latin-1"),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        body = await self._read_body(receive)
        out = _Buffered(self, scope, body or b"", send)
        if body is None:
            await out.error(413, "REQUEST_TOO_LARGE", f"body over {self.max_body} bytes")
            return
        if self.model_trust is not None and (why := self.model_trust()) is not None:
            await out.error(503, "MODEL_NOT_TRUSTED", why)
            return
        path = scope.get("path", "")
        if path in OPEN_PATHS:
            await self._run_app(scope, body, receive, out)
            await out.finish()
            return
        call, denial = await self._admit(scope, path)
        if denial is None and call is not None:
            # The answer leaves when the app sends its last body message (not when the app
            # returns), after the checks: token still valid, budget not exceeded.
            out.gate = lambda: self._final_check(call)
            token = current_charge.set(self._charger(call))
            try:
                await self._run_app(scope, body, receive, out)
            finally:
                current_charge.reset(token)
            await out.finish()
            return
        if call is not None:
            denial = await self._confirm(call) or denial
        status, code, msg, retry = denial or _UNAVAILABLE  # (never None here)
        await out.error(status, code, msg, retry_after=retry)

    async def _final_check(self, call: _Call) -> tuple[int, str, str, int | None] | None:
        """Run before any answer to an admitted request leaves: 401/503, then 429."""
        denial = await self._confirm(call)
        if denial is not None:
            return denial
        if call.denial is not None:
            d = call.denial
            return (429, "QUOTA_EXCEEDED", d.reason, d.retry_after)
        return None

    async def _run_app(self, scope: Scope, body: bytes, receive: Receive, out: _Buffered) -> None:
        try:
            await self.app(scope, _replay(body, receive), out.capture)
        except Exception:  # an answer still goes out, signed, without internals
            log.exception("scoring app failed")
            out.set_error(500, "INTERNAL_ERROR", "the scoring server failed; see its log")

    async def _read_body(self, receive: Receive) -> bytes | None:
        msg = await receive()
        if msg["type"] != "http.request":
            return b""
        first: bytes = msg.get("body", b"")
        if len(first) > self.max_body:
            return None
        if not msg.get("more_body", False):
            return first  # the usual case: one message
        chunks: list[bytes] = [first]
        size = len(first)
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return b"".join(chunks)

    async def _admit(
        self, scope: Scope, path: str
    ) -> tuple[_Call | None, tuple[int, str, str, int | None] | None]:
        fields = [v for n, v in scope.get("headers", []) if n.lower() == b"authorization"]
        if len(fields) > 1:  # a singleton field: a proxy could read another one than we do
            return None, (401, "UNAUTHENTICATED", "more than one Authorization header", None)
        secret = _bearer(fields[0]) if fields else None
        if secret is None:
            return None, (401, "UNAUTHENTICATED", "missing Authorization: Bearer <token>", None)
        try:
            who = await self.auth.authenticate(secret)
        except Exception as e:  # any store failure denies (fail closed)
            log.error("token check failed: %s", e)
            return None, _UNAVAILABLE
        if who is None:
            return None, _UNAUTHENTICATED
        call = _Call(who)
        if self.rate is not None and (d := self.rate.take(call.client)) is not None:
            return call, (429, "RATE_LIMITED", d.reason, d.retry_after)
        budget = self.budget if path == PREDICT_PATH else None
        if budget is not None and (d := budget.check(call.client)) is not None:
            return call, (429, "QUOTA_EXCEEDED", d.reason, d.retry_after)
        return call, None

    @staticmethod
    async def _confirm(call: _Call) -> tuple[int, str, str, int | None] | None:
        try:
            ok = await call.auth.confirm()
        except Exception as e:  # any store failure denies (fail closed)
            log.error("token re-check failed: %s", e)
            return _UNAVAILABLE
        return None if ok else _UNAUTHENTICATED

    def _charger(self, call: _Call) -> Callable[[int], None]:
        budget = self.budget

        def charge(n: int) -> None:
            if budget is None:
                return
            denial = budget.charge(call.client, n)
            if denial is not None:
                call.denial = denial
                raise BudgetExhausted(denial.reason)

        return charge


def _bearer(value: bytes) -> str | None:
    text = bytes(value).decode("latin-1")
    scheme, _, cred = text.partition(" ")
    if scheme.lower() == "bearer" and cred.strip():
        return cred.strip()
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _Buffered:
    """Collects the app's response, then sends it with digest and signature headers.

    The answer is sent once: when the app's last body message arrives (``capture``), or
    when the app returned without one (``finish``). Before it is sent, ``gate`` (if set)
    may replace it by an error answer.
    """

    def __init__(self, layer: GuardLayer, scope: Scope, request_body: bytes, send: Send) -> None:
        self.layer = layer
        self.scope = scope
        self.request_body = request_body
        self.send = send
        self.gate: Callable[[], Awaitable[tuple[int, str, str, int | None] | None]] | None = None
        self.sent = False
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    async def capture(self, message: Message) -> None:
        if self.sent:
            return  # the answer is out; anything later is dropped
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = list(message.get("headers", []))
            self.body = []
        elif message["type"] == "http.response.body":
            self.body.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self.finish()

    async def finish(self) -> None:
        """Check the gate, then send the answer (once)."""
        if self.sent:
            return
        if self.gate is not None:  # kept: an answer captured later is checked again
            denial = await self.gate()
            if denial is not None:
                status, code, msg, retry = denial
                self.set_error(status, code, msg, retry_after=retry)
        await self.flush()

    async def error(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
    ) -> None:
        self.set_error(status, code, message, retry_after=retry_after)
        await self.flush()

    def set_error(
        self, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        """Replace whatever was captured by a JSON error answer (unless already sent)."""
        if self.sent:
            return
        self.status = status
        self.headers = [(b"content-type", b"application/json")]
        if status == 401:
            self.headers.append((b"www-authenticate", b'Bearer realm="mlflow-guard serve"'))
        if retry_after is not None:
            self.headers.append((b"retry-after", str(retry_after).encode()))
        self.body = [json.dumps({"error_code": code, "message": message}).encode()]

    def _request_line(self) -> tuple[str, str]:
        scope = self.scope
        raw = scope.get("raw_path") or scope.get("path", "/").encode("latin-1")
        query = scope.get("query_string", b"")
        path = raw.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
        return str(scope.get("method", "GET")), path

    async def flush(self) -> None:
        if self.sent:
            return
        self.sent = True
        send = self.send
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        headers: list[tuple[bytes, bytes]] = []
        ctype: bytes | None = None
        for name, value in self.headers:
            low = name.lower()
            if low in _STRIP:
                continue
            if low == b"content-type":
                if ctype is not None:
                    continue  # one Content-Type: the one that is signed
                ctype = value
            headers.append((name, value))
        if ctype is None:
            ctype = b"application/octet-stream"
            headers.append((b"content-type", ctype))
        signer = self.layer.signer
        if signer is not None:
            method, raw_path = self._request_line()
            try:
                headers += signer.header_pairs(
                    status=self.status,
                    content_type=ctype.decode("latin-1"),
                    body=body,
                    request_body_digest=signing.content_digest(self.request_body),
                    method=method,
                    raw_path=raw_path,
                )
            except Exception:  # never send an unsigned answer by accident
                log.exception("response signing failed")
                await send({"type": "http.response.start", "status": 500, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        else:
            headers.append(self.layer.model_header)
            headers.append((b"content-digest", signing.content_digest(body).encode("ascii")))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
