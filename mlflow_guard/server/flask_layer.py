"""Enforcement in the Flask app: every route MLflow serves through Flask.

``before_request`` builds a :class:`RequestView`, asks the engine, and either answers the
refusal or hands MLflow the exact JSON object guard checked (with identity tags bound).
``after_request`` filters list responses to what the caller may read.
"""

from __future__ import annotations

import json
from typing import Any

from mlflow_guard.core.access import Resource
from mlflow_guard.core.policy import Action
from mlflow_guard.server.engine import Guard, Verdict
from mlflow_guard.server.request_view import BadRequest, RequestView, parse_json_body
from mlflow_guard.server.responses import error_body, error_headers

RAW_BODY_ENDPOINTS = frozenset(
    {"_upload_artifact", "serve_upload_artifact", "_graphql", "guard_feedback.ingest_feedback"}
)
_LIST_FILTERS = {
    "_search_experiments": ("experiments", "experiment"),
    "_search_registered_models": ("registered_models", "model"),
    "_search_model_versions": ("model_versions", "model"),
}


def _respond(verdict: Verdict) -> Any:
    from flask import Response

    headers = error_headers(verdict.status, verdict.request_id)
    body = error_body(verdict.status, verdict.message, verdict.reasons, verdict.request_id)
    return Response(body, status=verdict.status, headers=headers)


def build_view(request: Any, max_json: int) -> RequestView:
    """A :class:`RequestView` of the current Flask request (reads a JSON body at most once)."""
    endpoint = request.endpoint
    query = {k: request.args.getlist(k) for k in request.args}
    body = None
    uses_body = not (request.method == "GET" and query) and endpoint not in RAW_BODY_ENDPOINTS
    if uses_body and request.method not in ("HEAD", "OPTIONS"):
        length = request.content_length
        if length is not None and length > max_json:
            raise BadRequest(f"request body of {length} bytes exceeds {max_json} bytes", 413)
        body = parse_json_body(request.get_data(cache=True), request.content_type, max_json)
        if body is not None:
            request._cached_json = (body, body)
    return RequestView(
        method=request.method,
        path=request.path,
        endpoint=endpoint,
        view_args=dict(request.view_args or {}),
        query=query,
        body=body,
        headers={k.lower(): v for k, v in request.headers.items()},
    )


def install(app: Any, guard: Guard, max_json: int) -> None:
    """Register guard's hooks on MLflow's Flask app (first in line)."""
    from flask import g, request

    def before() -> Any:
        try:
            view = build_view(request, max_json)
        except BadRequest as e:
            bare = RequestView(
                method=request.method,
                path=request.path,
                endpoint=request.endpoint,
                headers={k.lower(): v for k, v in request.headers.items()},
            )
            return _respond(guard.refuse_malformed(bare, str(e), e.status))
        verdict = guard.check(view)
        g.mlflow_guard_verdict = verdict
        if not verdict.allowed:
            return _respond(verdict)
        if verdict.principal is not None:
            g.mlflow_authenticated_user = verdict.principal.user
            g.guard_principal = verdict.principal
        if verdict.body is not None:
            request._cached_json = (verdict.body, verdict.body)
            raw = json.dumps(verdict.body).encode("utf-8")
            request._cached_data = raw
        return None

    def after(response: Any) -> Any:
        verdict = g.get("mlflow_guard_verdict")
        if verdict is None:
            return response
        response.headers["X-Request-Id"] = verdict.request_id
        if response.status_code < 400:
            guard.after_change(request.endpoint)
        spec = _LIST_FILTERS.get(request.endpoint or "")
        if spec and verdict.principal is not None and response.status_code == 200:
            _filter(response, spec, guard, verdict)
        return response

    app.before_request_funcs.setdefault(None, []).insert(0, before)
    app.after_request(after)


def _filter(response: Any, spec: tuple[str, str], guard: Guard, verdict: Verdict) -> None:
    field, kind = spec
    try:
        doc = json.loads(response.get_data())
    except ValueError:
        response.set_data(error_body(503, "unreadable list response", [], verdict.request_id))
        response.status_code = 503
        return
    items = doc.get(field) or []
    principal = verdict.principal
    assert principal is not None
    kept = [
        i
        for i in items
        if isinstance(i, dict)
        and guard.may(principal, Action.READ, Resource(kind, str(i.get("name", ""))))  # type: ignore[arg-type]
    ]
    doc[field] = kept
    response.set_data(json.dumps(doc))
