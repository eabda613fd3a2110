"""JSON error bodies in MLflow's shape (``error_code`` + ``message``) plus guard's reasons."""

from __future__ import annotations

import json

_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}


def error_body(status: int, message: str, reasons: list[str], request_id: str) -> bytes:
    """The response body of a guard refusal."""
    doc = {
        "error_code": _CODES.get(status, "INVALID_STATE"),
        "message": f"mlflow-guard: {message}",
        "reasons": reasons,
        "request_id": request_id,
    }
    return json.dumps(doc).encode("utf-8")


def error_headers(status: int, request_id: str) -> list[tuple[str, str]]:
    """Headers of a guard refusal (``WWW-Authenticate`` on 401)."""
    headers = [("Content-Type", "application/json"), ("X-Request-Id", request_id)]
    if status == 401:
        headers.append(("WWW-Authenticate", 'Basic realm="mlflow-guard", charset="UTF-8"'))
    return headers
