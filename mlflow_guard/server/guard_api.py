"""Guard's REST namespace ``/api/2.0/mlflow-guard/``: identity, users, API tokens, status.

This blueprint is the router later issues extend (registry approvals, promotion requests,
verification status): add a view to :data:`blueprint` and give it a decision with
:func:`mlflow_guard.server.routes.register_guard_route` in :func:`routes_specs`. Handlers run
after the engine allowed the route; handlers that act on another user's data make a second,
audited decision with :meth:`Guard.record`.
"""

from __future__ import annotations

import importlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from mlflow_guard.core import access
from mlflow_guard.core.access import SERVER, Principal
from mlflow_guard.core.policy import Action
from mlflow_guard.server.engine import Guard
from mlflow_guard.server.routes import AUTHENTICATED, SERVER_ADMIN, RouteSpec, register_guard_route

_log = logging.getLogger(__name__)
PREFIX = "/api/2.0/mlflow-guard"
BP = "mlflow_guard_api"


def _routes() -> dict[str, RouteSpec]:
    return {
        f"{BP}.whoami": AUTHENTICATED,
        f"{BP}.status": AUTHENTICATED,
        f"{BP}.create_user": SERVER_ADMIN,
        f"{BP}.delete_user": SERVER_ADMIN,
        f"{BP}.update_password": AUTHENTICATED,
        f"{BP}.create_token": AUTHENTICATED,
        f"{BP}.list_tokens": AUTHENTICATED,
        f"{BP}.revoke_token": AUTHENTICATED,
    }


def install(app: Any, guard: Guard, database_uri: str) -> None:
    """Mount the guard blueprint (and the feedback blueprint when that module exists)."""
    from flask import Blueprint, g, jsonify, request

    bp = Blueprint(BP, __name__, url_prefix=PREFIX)

    def me() -> Principal:
        principal: Principal | None = g.mlflow_guard_verdict.principal
        assert principal is not None
        return principal

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}

    def refuse(status: int, msg: str) -> Any:
        return jsonify(
            {
                "error_code": "PERMISSION_DENIED" if status == 403 else "INVALID_PARAMETER_VALUE",
                "message": f"mlflow-guard: {msg}",
            }
        ), status

    def self_or_admin(user: str, what: str) -> Any:
        p = me()
        if user == p.user:
            return None
        d = access.decide(guard.policy, p, Action.ADMIN, SERVER)
        if not guard.record(p, f"admin {what} for {user}", d):
            return refuse(503, "audit log unavailable")
        return None if d.allowed else refuse(403, f"{p.user} may not {what} for {user}")

    @bp.get("/whoami")
    def whoami() -> Any:
        p = me()
        return jsonify(
            {
                "user": p.user,
                "is_admin": p.is_admin,
                "via": p.via,
                "roles": access.roles_of(guard.policy, p.user),
            }
        )

    @bp.get("/status")
    def status() -> Any:
        seq, head = guard.store.head()
        return jsonify(
            {
                "ok": True,
                "audit": {"seq": seq, "head": head},
                "policy": {
                    "roles": len(guard.policy.roles),
                    "access_rules": len(guard.policy.access),
                },
            }
        )

    @bp.post("/users/create")
    def create_user() -> Any:
        b = body()
        name, pw = str(b.get("username", "")), str(b.get("password", ""))
        if not name or not pw:
            return refuse(400, "username and password are required")
        guard.users.create_user(name, pw, bool(b.get("is_admin", False)))
        guard.store.bump_revision()
        return jsonify({"user": {"username": name}})

    @bp.delete("/users/delete")
    def delete_user() -> Any:
        name = str(body().get("username", ""))
        guard.users.delete_user(name)
        guard.store.bump_revision()
        return jsonify({})

    @bp.patch("/users/update-password")
    def update_password() -> Any:
        b = body()
        name, pw = str(b.get("username", "")), str(b.get("password", ""))
        if not name or not pw:
            return refuse(400, "username and password are required")
        if (r := self_or_admin(name, "change the password")) is not None:
            return r
        guard.users.update_user(name, password=pw)
        guard.store.bump_revision()
        return jsonify({})

    @bp.post("/tokens/create")
    def create_token() -> Any:
        b = body()
        user = str(b.get("user") or me().user)
        if (r := self_or_admin(user, "create a token")) is not None:
            return r
        expires = None
        if b.get("expires_in_seconds") is not None:
            try:
                expires = datetime.now(UTC) + timedelta(seconds=int(b["expires_in_seconds"]))
            except (TypeError, ValueError):
                return refuse(400, "expires_in_seconds must be an integer")
        token_id, secret = guard.store.create_token(user, expires, str(b.get("description", "")))
        return jsonify(
            {
                "token_id": token_id,
                "token": secret,
                "user": user,
                "expires_at": expires.isoformat() if expires else None,
            }
        )

    @bp.get("/tokens/list")
    def list_tokens() -> Any:
        p = me()
        every = access.decide(guard.policy, p, Action.ADMIN, SERVER).allowed
        tokens = guard.store.list_tokens(None if every else p.user)
        return jsonify({"tokens": [t.to_json() for t in tokens]})

    @bp.post("/tokens/revoke")
    def revoke_token() -> Any:
        token_id = str(body().get("token_id", ""))
        info = guard.store.get_token(token_id)
        if info is None:
            return refuse(400, f"no token {token_id!r}")
        if (r := self_or_admin(info.user, "revoke a token")) is not None:
            return r
        guard.store.revoke_token(token_id)
        return jsonify({"revoked": token_id})

    for endpoint, spec in _routes().items():
        register_guard_route(endpoint, spec)
    app.register_blueprint(bp)
    _mount_feedback(app, guard, database_uri)
    from mlflow_guard.registry import api as registry_api

    registry_api.install(app, guard, database_uri)


def _mount_feedback(app: Any, guard: Guard, database_uri: str) -> None:
    """Mount H5's feedback collector when :mod:`mlflow_guard.feedback.http` exists.

    Its ``create_blueprint`` registers the decisions of its endpoints in the route map.
    """
    try:
        mod = importlib.import_module("mlflow_guard.feedback.http")
        from mlflow_guard.feedback.store import FeedbackStore
    except ModuleNotFoundError:
        return
    bp = mod.create_blueprint(lambda: guard.policy, FeedbackStore(database_uri))
    app.register_blueprint(bp)
