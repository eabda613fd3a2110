"""The ASGI layer buffers an OTLP export's body only for a caller whose credentials are valid.

Reading (up to the size limit) before authentication let anyone make a worker hold 16 MiB per
request. A real FastAPI route, a recording ``receive``; the guard records what it was asked and
refuses, since only the order of reading and deciding is under test here (the engine's decisions
on OTLP bodies are tested live in ``test_redteam_live.py``).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from fastapi import FastAPI

from mlflow_guard.server.asgi_layer import GuardASGI
from mlflow_guard.server.engine import Verdict
from mlflow_guard.server.request_view import RequestView


class _Guard:
    def __init__(self, valid: bool) -> None:
        self.valid = valid
        self.seen: list[tuple[str, bool]] = []  # (call, body buffered when called)

    def credentials_valid(self, view: RequestView) -> bool:
        self.seen.append(("credentials_valid", view.otlp is not None))
        return self.valid

    def check(self, view: RequestView) -> Verdict:
        self.seen.append(("check", view.otlp is not None))
        return Verdict(401 if not self.valid else 403, "refused", request_id="r")


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/traces")
    async def export_traces() -> dict[str, str]:
        return {}

    return app


@pytest.mark.parametrize(("valid", "status", "read"), [(False, 401, False), (True, 403, True)])
def test_body_is_read_only_after_the_credentials_are_valid(
    valid: bool, status: int, read: bool
) -> None:
    guard = _Guard(valid)
    layer = GuardASGI(_app(), guard, max_body=1024)  # type: ignore[arg-type]
    received: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        msg = {"type": "http.request", "body": b"x" * 100, "more_body": False}
        received.append(msg)
        return msg

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/v1/traces", "raw_path": b"/v1/traces",
        "query_string": b"", "root_path": "", "headers": [(b"content-type", b"application/json")],
    }  # fmt: skip
    anyio.run(layer, scope, receive, send)
    assert sent[0]["status"] == status
    assert bool(received) is read
    assert guard.seen == [("credentials_valid", False), ("check", read)]
