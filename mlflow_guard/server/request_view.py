"""A framework-neutral view of one request, built by the Flask and the ASGI layers.

Parameters are read the way MLflow's handlers read them: a ``GET`` with a query string uses the
query string; every other request uses the JSON body (MLflow also decodes a body that is a JSON
*string* a second time, so guard does the same and hands MLflow the object it checked).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlflow_guard.core.access import Principal

if TYPE_CHECKING:
    from mlflow_guard.server.otlp import OtlpBody


class BadRequest(Exception):
    """The request is malformed: answered with 400 (or ``status``) and this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class NotFound(Exception):
    """The resource the request names does not exist: answered with 404."""


@dataclass
class RequestView:
    """What the guard engine needs to decide on a request.

    Attributes:
        method: HTTP method.
        path: decoded request path.
        endpoint: Flask endpoint name or ``fastapi:<route name>``.
        view_args: path parameters.
        query: query-string values (lists, in order).
        body: parsed JSON body (``None`` when absent or not used for parameters).
        headers: request headers (lower-case names).
        principal: the caller, once authenticated.
        otlp: the body of an OTLP export (``/v1/traces``), parsed when a resolver asks.
        memo: facts read from the stores while deciding this request (each read once).
    """

    method: str
    path: str
    endpoint: str | None
    view_args: Mapping[str, Any] = field(default_factory=dict)
    query: Mapping[str, list[str]] = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    principal: Principal | None = None
    otlp: OtlpBody | None = None
    memo: dict[str, Any] = field(default_factory=dict)

    def params(self) -> Mapping[str, Any]:
        """Parameters as MLflow reads them (query for GET with a query string, else body)."""
        if self.method == "GET" and self.query:
            return {k: (v if len(v) > 1 else v[0]) for k, v in self.query.items() if v}
        return self.body if isinstance(self.body, dict) else {}

    def param(self, name: str) -> str | None:
        """One string parameter (the first value), or ``None``."""
        if self.method == "GET" and self.query:
            values = self.query.get(name)
            return values[0] if values else None
        value = self.params().get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise BadRequest(f"parameter {name!r} must be a string")
        return str(value)

    def param_list(self, name: str) -> list[str]:
        """A repeated parameter as a list of strings."""
        if self.method == "GET" and self.query:
            return list(self.query.get(name, []))
        value = self.params().get(name)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
            return [str(v) for v in value]
        raise BadRequest(f"parameter {name!r} must be a list of strings")


def parse_json_body(raw: bytes, content_type: str | None, limit: int) -> Any:
    """Parse a JSON request body as MLflow would, with guard's size limit.

    Returns ``None`` for an empty body. Raises :class:`BadRequest` (413 when too large).
    """
    if len(raw) > limit:
        raise BadRequest(
            f"request body of {len(raw)} bytes exceeds the limit of {limit} bytes "
            "(MLFLOW_GUARD_MAX_JSON_BYTES)",
            status=413,
        )
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
        if isinstance(data, str):
            data = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"malformed JSON request body: {e}") from e
    if not isinstance(data, dict):
        raise BadRequest(f"JSON request body must be an object, got {type(data).__name__}")
    return data
