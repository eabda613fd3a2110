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
DEFAULT_TOKEN_LIFETIME = timedelta(days=90)
MAX_TOKEN_LIFETIME = timedelta(days=3650)


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
                "error_code": {
                    403: "PERMISSION_DENIED",
                    404: "RESOURCE_DOES_NOT_EXIST",
                    409: "RESOURCE_ALREADY_EXISTS",
                }.get(status, "INVALID_PARAMETER_VALUE"),
                "message": f"mlflow-guard: {msg}",
            }
        ), status

    def user_store(call: Any, name: str, *args: Any, **kw: Any) -> Any:
        """Run a user-store call; MLflow's errors become 404/409/400 with our own message.

        MLflow's message is not passed on: for a duplicate user it quotes the failed SQL
        statement, password hash included.
        """
        from mlflow.exceptions import MlflowException

        try:
            call(name, *args, **kw)
        except MlflowException as e:
            _log.info("user store refused %r: %s", name, e.error_code)
            if e.error_code == "RESOURCE_DOES_NOT_EXIST":
                return refuse(404, f"no user {name!r}")
            if e.error_code == "RESOURCE_ALREADY_EXISTS":
                return refuse(409, f"user {name!r} already exists")
            return refuse(400, f"the user store refused the change for {name!r} ({e.error_code})")
        return None

    def caller_token_expiry(p: Principal) -> tuple[bool, datetime | None]:
        """(authenticated by a token, that token's expiry)."""
        if not p.via.startswith("token:"):
            return False, None
        info = guard.store.get_token(p.via.removeprefix("token:"))
        return True, info.expires_at if info is not None else datetime.now(UTC)

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
        if (
            r := user_store(guard.users.create_user, name, pw, bool(b.get("is_admin")))
        ) is not None:
            return r
        guard.store.bump_revision()
        return jsonify({"user": {"username": name}})

    @bp.delete("/users/delete")
    def delete_user() -> Any:
        name = str(body().get("username", ""))
        if (r := user_store(guard.users.delete_user, name)) is not None:
            return r
        # The account is gone: so are its API tokens (a new account of that name starts clean).
        revoked = guard.store.revoke_user_tokens(name)
        return jsonify({"tokens_revoked": revoked})

    @bp.patch("/users/update-password")
    def update_password() -> Any:
        b = body()
        name, pw = str(b.get("username", "")), str(b.get("password", ""))
        if not name or not pw:
            return refuse(400, "username and password are required")
        if name == me().user and caller_token_expiry(me())[0]:
            # A leaked token must not become a password (which never expires).
            return refuse(
                403,
                "changing your own password needs your current password: sign in with HTTP "
                "Basic, not an API token",
            )
        if (r := self_or_admin(name, "change the password")) is not None:
            return r
        if (r := user_store(guard.users.update_user, name, password=pw)) is not None:
            return r
        guard.store.bump_revision()
        return jsonify({})

    @bp.post("/tokens/create")
    def create_token() -> Any:
        b = body()
        user = str(b.get("user") or me().user)
        if (r := self_or_admin(user, "create a token")) is not None:
            return r
        lifetime = DEFAULT_TOKEN_LIFETIME
        if b.get("expires_in_seconds") is not None:
            try:
                seconds = int(b["expires_in_seconds"])
            except (TypeError, ValueError):
                return refuse(400, "expires_in_seconds must be an integer")
            if not 0 < seconds <= MAX_TOKEN_LIFETIME.total_seconds():
                return refuse(
                    400,
                    f"expires_in_seconds must be between 1 and {MAX_TOKEN_LIFETIME.days} days "
                    f"({int(MAX_TOKEN_LIFETIME.total_seconds())})",
                )
            lifetime = timedelta(seconds=seconds)
        expires = datetime.now(UTC) + lifetime
        via_token, parent_expiry = caller_token_expiry(me())
        if via_token and (parent_expiry is None or expires > parent_expiry):
            # Otherwise a leaked short-lived token buys a longer-lived one (never-expiring
            # parents included: they get no children, use Basic auth to create tokens).
            return refuse(
                403,
                "a token created with an API token may not outlive the token used "
                f"(expires {parent_expiry.isoformat() if parent_expiry else 'never'}); pass a "
                "shorter expires_in_seconds or sign in with HTTP Basic",
            )
        token_id, secret = guard.store.create_token(user, expires, str(b.get("description", "")))
        return jsonify(
            {
                "token_id": token_id,
                "token": secret,
                "user": user,
                "expires_at": expires.isoformat(),
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
    bp = mod.create_blueprint(
        lambda: guard.policy, FeedbackStore(database_uri), trust_of=guard.watch.trust_for
    )
    app.register_blueprint(bp)
