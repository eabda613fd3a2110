"""Enforcement for FastAPI-native routes, and ``TCP_NODELAY`` on the listening sockets.

Artifact upload/download, OTLP traces, jobs, gateway, assistant and MCP routes are served by
FastAPI directly and never reach Flask's ``before_request``. This ASGI wrapper matches each
request against those routes exactly as Starlette will (first full match before the Flask
mount) and asks the engine; everything else falls through to Flask, which enforces itself.

The OTLP export (``/v1/traces``) is the one native route whose *body* guard must read (the
trace ids it writes to, see :mod:`mlflow_guard.server.otlp`): once the caller's credentials are
valid, the wrapper buffers it (bounded), lets the engine parse it, and replays the bytes guard
parsed to MLflow.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from mlflow_guard.server.engine import Guard, Verdict
from mlflow_guard.server.otlp import OtlpBody
from mlflow_guard.server.request_view import BadRequest, RequestView
from mlflow_guard.server.responses import error_body, error_headers

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
OTLP_ENDPOINT = "fastapi:export_traces"


def set_nodelay_on_listeners() -> int:
    """Set ``TCP_NODELAY`` on this process's listening TCP sockets; return how many.

    Linux copies it to every accepted connection, which removes the ~40 ms Nagle/delayed-ACK
    stall of back-to-back keep-alive requests when uvicorn binds the socket itself.
    """
    count = 0
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        return 0
    for fd in fds:
        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if (
                s.type == socket.SOCK_STREAM
                and s.family in (socket.AF_INET, socket.AF_INET6)
                and s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            ):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                count += 1
        except OSError:
            pass
        finally:
            s.close()
    return count


def merged_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI headers as a dict; a repeated header's values joined with ``", "``.

    Handlers read the *first* value (Starlette) while a plain dict keeps the last: joining them
    (as the WSGI bridge does for Flask) means guard never checks a different value than the one
    used, and a joined identifier or credential no longer parses, so it is refused.
    """
    out: dict[str, str] = {}
    for k, v in raw:
        name, value = k.decode("latin-1").lower(), v.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def native_routes(fastapi_app: Any) -> list[Any]:
    """Route contexts of the FastAPI app, in matching order, excluding the Flask mount."""
    out: list[Any] = []
    for r in fastapi_app.routes:
        contexts = getattr(r, "effective_route_contexts", None)
        if contexts is not None:
            out.extend(contexts())
        elif type(r).__name__ != "Mount" and hasattr(r, "matches"):
            out.append(r)
    return out


def match_native(routes: list[Any], scope: Scope) -> tuple[str, dict[str, Any]] | None:
    """``(route name, path params)`` of the native route serving ``scope``, or ``None``."""
    from starlette.routing import Match

    for r in routes:
        m, child = r.matches(scope)
        if m == Match.FULL:
            return str(r.name), dict(child.get("path_params") or {})
    return None


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` when the client went away.

    Reading stops after ``limit + 1`` bytes (the caller refuses such a body with 413).
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit or not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` in one message, then defers to ``receive``."""
    pending: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": body, "more_body": False}
    ]

    async def replay() -> MutableMapping[str, Any]:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def replaced_body_headers(raw: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    """Request headers for a decompressed body: no ``Content-Encoding``, the new length."""
    drop = (b"content-encoding", b"content-length")
    kept = [(k, v) for k, v in raw if k.lower() not in drop]
    return [*kept, (b"content-length", str(length).encode())]


class GuardASGI:
    """Wraps MLflow's FastAPI app; enforces guard on native routes.

    Args:
        app: MLflow's FastAPI app.
        guard: the worker's engine.
        max_body: the largest OTLP body guard reads (``MLFLOW_GUARD_MAX_JSON_BYTES``).
    """

    def __init__(self, app: Any, guard: Guard, max_body: int = 16 * 1024 * 1024) -> None:
        self.app = app
        self.guard = guard
        self.max_body = max_body
        self.routes = native_routes(app)
        self._nodelay_done = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._nodelay_done:
            self._nodelay_done = True
            set_nodelay_on_listeners()
        hit = match_native(self.routes, scope)
        if hit is not None:
            import anyio

            name, params = hit
            view = RequestView(
                method=scope["method"],
                path=scope["path"],
                endpoint=f"fastapi:{name}",
                view_args=params,
                query={
                    k: v
                    for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()
                },
                headers=merged_headers(scope["headers"]),
            )
            if view.endpoint == OTLP_ENDPOINT and await anyio.to_thread.run_sync(
                self.guard.credentials_valid, view
            ):  # the body is buffered for authenticated callers only (memory is not free)
                raw = await read_body(receive, self.max_body)
                if raw is None:
                    return
                view.otlp = OtlpBody(
                    raw,
                    view.headers.get("content-type"),
                    view.headers.get("content-encoding"),
                    self.max_body,
                )
            verdict = await anyio.to_thread.run_sync(self.guard.check, view)
            if not verdict.allowed:
                await _send_refusal(send, verdict)
                return
            if view.otlp is not None:
                # Allowed means the engine parsed the body; MLflow gets the bytes guard read.
                try:
                    body = view.otlp.body()
                except BadRequest as e:  # not parsed by a resolver: refuse, fail closed
                    refusal = self.guard.refuse_malformed(view, str(e), e.status)
                    await _send_refusal(send, refusal)
                    return
                receive = replaying(body, receive)
                if view.otlp.content_encoding:
                    scope = dict(scope)
                    scope["headers"] = replaced_body_headers(scope["headers"], len(body))
            scope.setdefault("state", {})["mlflow_guard_user"] = (
                verdict.principal.user if verdict.principal else None
            )
        await self.app(scope, receive, send)


async def _send_refusal(send: Send, verdict: Verdict) -> None:
    body = error_body(verdict.status, verdict.message, verdict.reasons, verdict.request_id)
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in error_headers(verdict.status, verdict.request_id)
    ]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": verdict.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
