"""Enforcement for FastAPI-native routes, and ``TCP_NODELAY`` on the listening sockets.

Artifact upload/download, OTLP traces, jobs, gateway, assistant and MCP routes are served by
FastAPI directly and never reach Flask's ``before_request``. This ASGI wrapper matches each
request against those routes exactly as Starlette will (first full match before the Flask
mount) and asks the engine; everything else falls through to Flask, which enforces itself.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from mlflow_guard.server.engine import Guard, Verdict
from mlflow_guard.server.request_view import RequestView
from mlflow_guard.server.responses import error_body, error_headers

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


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


class GuardASGI:
    """Wraps MLflow's FastAPI app; enforces guard on native routes."""

    def __init__(self, app: Any, guard: Guard) -> None:
        self.app = app
        self.guard = guard
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
            verdict = await anyio.to_thread.run_sync(self.guard.check, view)
            if not verdict.allowed:
                await _send_refusal(send, verdict)
                return
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
