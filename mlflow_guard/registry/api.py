"""REST API ``/api/2.0/mlflow-guard/promotions/...``: request, status, approve, reject, withdraw.

Every route is authenticated by the guard engine (route map entry ``authenticated``); the
handlers make the model-level decision themselves and audit it:

* ``POST request`` — open a promotion request (needs ``register`` or ``promote`` on the model);
* ``GET status`` — by ``id`` or ``name``/``version``/``target`` (needs ``read``): every gate
  with numbers, counted and ignored approvals with why, signature/scan/lineage facts;
* ``GET list`` — requests (``state=pending`` by default) of models the caller may read;
* ``POST approve|reject|withdraw`` — an authenticated decision (needs ``approve`` on the model
  and an approver role) or a submitted signed envelope (``{"envelope": {...}}``).

When an approval makes a pending request pass, the server applies it (exactly once across
replicas, see :func:`mlflow_guard.registry.service.apply`).
"""

from __future__ import annotations

from typing import Any

from mlflow_guard.core.access import Principal
from mlflow_guard.core.decision import Decision
from mlflow_guard.core.errors import GuardError
from mlflow_guard.core.policy import Action
from mlflow_guard.registry import service
from mlflow_guard.registry.enforce import RegistryGuard
from mlflow_guard.registry.records import DuplicateApproval

BP = "mlflow_guard_promotions"
PREFIX = "/api/2.0/mlflow-guard/promotions"
ENDPOINTS = ("request", "status", "list_requests", "approve", "reject", "withdraw")


def create_blueprint(guard: Any, reg: RegistryGuard) -> Any:
    """The Flask blueprint; ``guard`` is the engine (for audit records)."""
    from flask import Blueprint, g, jsonify, request

    bp = Blueprint(BP, __name__, url_prefix=PREFIX)

    def me() -> Principal:
        principal: Principal | None = g.mlflow_guard_verdict.principal
        assert principal is not None
        return principal

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}

    def fail(status: int, msg: str, hint: str = "") -> Any:
        code = {403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST", 409: "ALREADY_EXISTS"}
        return jsonify(
            {
                "error_code": code.get(status, "INVALID_PARAMETER_VALUE"),
                "message": f"mlflow-guard: {msg}" + (f" ({hint})" if hint else ""),
            }
        ), status

    def audit(p: Principal, what: str, d: Decision) -> bool:
        return bool(guard.record(p, what, d))

    def allowed(p: Principal, actions: tuple[Action, ...], model: str) -> bool:
        return any(service.reg_decide(reg, p, a, model) for a in actions)

    @bp.post("/request")
    def request_() -> Any:
        p, b = me(), body()
        try:
            model, version = str(b.get("name", "")), str(b.get("version", ""))
            target = service.parse_target(model, version, str(b.get("target", "")))
        except service.Refused as e:
            return fail(e.status, e.summary, e.hint)
        if not allowed(p, (Action.REGISTER, Action.PROMOTE), model):
            msg = f"{p.user} may not request promotions of {model!r} (needs register or promote)"
            audit(
                p,
                f"request promotion {model} v{version} -> {target}",
                Decision.deny("promotion-request", msg),
            )
            return fail(403, msg)
        if reg.rule_for(target) is None:
            return fail(400, f"{target} is not protected: set it with the MLflow client")
        req = reg.records.request(
            model,
            version,
            target,
            by=p.user,
            comment=str(b.get("comment", ""))[:2000],
            tag_value=str(b["tag_value"]) if b.get("tag_value") is not None else None,
        )
        audit(p, f"request promotion {model} v{version} -> {target}", Decision.allow("request"))
        ev = reg.evaluate(model, version, target)
        promoted = ev.decision.allowed and service.apply(reg, req, p.user)
        return jsonify(
            {
                "request": (reg.records.get(req.id) or req).to_json(),
                "status": service.status_json(ev),
                "promoted": promoted,
            }
        )

    @bp.get("/status")
    def status() -> Any:
        p = me()
        if request.args.get("id"):
            try:
                req = reg.records.get(int(request.args["id"]))
            except ValueError:
                return fail(400, "id must be a number")
            if req is None:
                return fail(404, f"no promotion request {request.args['id']}")
            model, version, target = req.model, req.version, req.target
        else:
            model = request.args.get("name", "")
            version = request.args.get("version", "")
            try:
                target = service.parse_target(model, version, request.args.get("target", ""))
            except service.Refused as e:
                return fail(e.status, e.summary, e.hint)
        if not allowed(p, (Action.READ,), model):
            if request.args.get("id"):  # the caller named only the id: do not reveal the model
                return fail(403, f"{p.user} may not read promotion request {request.args['id']}")
            return fail(403, f"{p.user} may not read model {model!r}")
        ev = reg.evaluate(model, version, target)
        reqs = reg.records.find(model, version, target)
        return jsonify(
            {
                "name": model,
                "version": version,
                "target": str(target),
                "requests": [r.to_json() for r in reqs],
                "status": service.status_json(ev),
            }
        )

    @bp.get("/list")
    def list_requests() -> Any:
        p = me()
        state = request.args.get("state", "pending")
        reqs = reg.records.find(state=None if state == "all" else state)
        return jsonify(
            {"requests": [r.to_json() for r in reqs if allowed(p, (Action.READ,), r.model)]}
        )

    def decision_view(kind: str) -> Any:
        p, b = me(), body()
        what = (
            f"{kind} {b.get('name', '(signed)')} v{b.get('version', '')} -> {b.get('target', '')}"
        )
        try:
            a, ev = service.decide(reg, p, kind, b)  # type: ignore[arg-type]
        except service.Refused as e:
            audit(p, what, Decision.deny(f"promotion-{kind}", e.summary))
            return fail(e.status, e.summary, e.hint)
        except DuplicateApproval as e:
            audit(p, what, Decision.deny(f"promotion-{kind}", e.summary))
            return fail(409, e.summary)
        except GuardError as e:
            return fail(400, e.summary, e.hint)
        what = f"{kind} {a.model} v{a.version} -> {a.target} as {a.approver} ({a.kind})"
        if not audit(p, what, Decision.allow(f"promotion-{kind}", a.root_digest)):
            return fail(503, "audit log unavailable")
        promoted = False
        if ev.decision.allowed:
            promoted = service.apply_if_ready(reg, a.model, a.version, a.target, p.user, ev.facts)
            if promoted:
                audit(p, f"promote {a.model} v{a.version} -> {a.target}", ev.decision)
                ev = reg.evaluate(a.model, a.version, a.target, ev.facts)
        return jsonify(
            {
                "recorded": {"approver": a.approver, "decision": a.decision, "kind": a.kind},
                "promoted": promoted,
                "status": service.status_json(ev),
            }
        )

    @bp.post("/approve")
    def approve() -> Any:
        return decision_view("approve")

    @bp.post("/reject")
    def reject() -> Any:
        return decision_view("reject")

    @bp.post("/withdraw")
    def withdraw() -> Any:
        return decision_view("withdraw")

    return bp


def install(app: Any, guard: Any, database_uri: str) -> RegistryGuard:
    """Attach the registry guard to the engine, mount the REST API (and the reviewer pages)."""
    from mlflow_guard.server.routes import AUTHENTICATED, register_guard_route

    watch = getattr(guard, "watch", None)
    reg = (
        RegistryGuard(lambda: guard.policy, database_uri, watch.trust_for)
        if watch is not None
        else RegistryGuard(lambda: guard.policy, database_uri)
    )
    guard.registry = reg
    for name in ENDPOINTS:
        register_guard_route(f"{BP}.{name if name != 'request' else 'request_'}", AUTHENTICATED)
    app.register_blueprint(create_blueprint(guard, reg))
    import importlib

    try:
        web = importlib.import_module("mlflow_guard.registry.web")
    except ModuleNotFoundError:
        return reg
    web.install(app, guard, reg)
    return reg
