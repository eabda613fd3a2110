"""Promotion operations shared by the REST API and the reviewer pages.

Recording a decision (authenticated or signed), reporting a request's status as JSON, and
applying a promotion exactly once: the replica whose conditional update moves the request from
``pending`` to ``promoted`` performs the registry write; every other replica sees it done.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlflow_guard.core import approvals as ap
from mlflow_guard.core.access import Principal, Resource
from mlflow_guard.core.errors import GuardError, PolicyViolation, UsageError
from mlflow_guard.core.policy import Action
from mlflow_guard.registry.enforce import Evaluation, RegistryGuard
from mlflow_guard.registry.records import PromotionRequest
from mlflow_guard.registry.subject import VersionFacts


class Refused(PolicyViolation):
    """A decision the server will not record, with the HTTP status to answer with."""

    def __init__(self, summary: str, status: int = 403, hint: str = "") -> None:
        super().__init__(summary, hint=hint)
        self.status = status


def status_json(ev: Evaluation) -> dict[str, Any]:
    """A promotion check as JSON: decision, every gate with numbers, approvals, facts."""
    st = ev.status
    return {
        "allowed": ev.decision.allowed,
        "reasons": list(ev.decision.reasons),
        "gates": [
            {"metric": g.metric, "expression": g.expression, "value": g.value, "passed": g.passed}
            for g in (st.gates if st else ())
        ],
        "required": st.required if st else None,
        "counted": [_approval_json(a) for a in (st.counted if st else ())],
        "ignored": [{**_approval_json(a), "why": why} for a, why in (st.ignored if st else ())],
        "rejections": [_approval_json(a) for a in (st.rejections if st else ())],
        "version": ev.facts.to_json() if ev.facts else None,
    }


def _approval_json(a: ap.Approval) -> dict[str, Any]:
    return {
        "approver": a.approver,
        "kind": a.kind,
        "decision": a.decision,
        "root_digest": a.root_digest,
        "issued_at": a.issued_at.isoformat(),
        "expires_at": a.expires_at.isoformat() if a.expires_at else None,
        "comment": a.comment,
        "key_id": a.key_id,
    }


def parse_target(model: str, version: str, target: str) -> ap.Target:
    """Validate the three fields that name a promotion."""
    if not model or not version or not target:
        raise Refused("name, version and target are required", 400)
    if not version.isdigit():
        raise Refused(f"version must be a number, got {version!r}", 400)
    try:
        return ap.Target.parse(target)
    except UsageError as e:
        raise Refused(e.summary, 400, e.hint) from e


def decide(
    reg: RegistryGuard,
    principal: Principal,
    kind: ap.DecisionKind,
    body: dict[str, Any],
) -> tuple[ap.Approval, Evaluation]:
    """Record one approval/rejection/withdrawal; return it and the re-evaluated status.

    ``body`` holds either ``envelope`` (a signed approval, whose own decision must be ``kind``)
    or ``name``/``version``/``target`` for an authenticated decision by ``principal``.

    Raises:
        Refused: the decision would not count (with the reason), or the caller may not decide.
        DuplicateApproval: the same decision was already recorded.
    """
    now = datetime.now(UTC)
    envelope = body.get("envelope")
    if envelope is not None:
        try:
            a = ap.verify_signed(envelope, reg.trust, at=now)
        except GuardError as e:
            raise Refused(f"signed approval refused: {e.summary}", 403, e.hint) from e
        if a.decision != kind:
            raise Refused(f"the signed envelope records '{a.decision}', not '{kind}'", 400)
        model, version, target = a.model, a.version, a.target
    else:
        model, version = str(body.get("name", "")), str(body.get("version", ""))
        target = parse_target(model, version, str(body.get("target", "")))
        d = reg_decide(reg, principal, Action.APPROVE, model)
        if not d:
            raise Refused(
                f"{principal.user} may not approve model {model!r}: no access rule grants "
                "'approve' on it",
                403,
                "ask a policy owner for an approver role",
            )
        a = ap.Approval(model, version, target, "", principal.user, kind, now, "authenticated")
    rule = reg.rule_for(target)
    if rule is None:
        raise Refused(f"{target} is not a protected target: nothing to approve", 400)
    ev = reg.evaluate(model, version, target)
    if ev.facts is None or ev.facts.subject is None:
        raise Refused(
            "the version's digest cannot be established: " + "; ".join(ev.decision.reasons), 409
        )
    subject = ev.facts.subject
    if a.kind == "authenticated":
        a = ap.Approval(
            model,
            version,
            target,
            subject.root_digest,
            principal.user,
            kind,
            now,
            "authenticated",
            comment=str(body.get("comment", ""))[:2000],
        )
    why = ap.why_not_counted(a, subject, rule, reg.policy.roles, now=now)
    if why:
        raise Refused(f"{kind} by {a.approver} does not count: {why}", 403)
    reg.records.record_approval(
        a,
        recorded_by=principal.user,
        envelope=None if envelope is None else _dump(envelope),
    )
    return a, reg.evaluate(model, version, target, ev.facts)


def reg_decide(reg: RegistryGuard, principal: Principal, action: Action, model: str) -> bool:
    """Whether the policy grants ``action`` on registered model ``model``."""
    from mlflow_guard.core import access

    return access.decide(reg.policy, principal, action, Resource("model", model)).allowed


def _dump(envelope: Any) -> str:
    import json

    return envelope if isinstance(envelope, str) else json.dumps(envelope, sort_keys=True)


def apply_if_ready(
    reg: RegistryGuard,
    model: str,
    version: str,
    target: ap.Target,
    by: str,
    facts: VersionFacts | None = None,
) -> bool:
    """Apply the pending request for this promotion when it is allowed; exactly once.

    Returns ``True`` when this call performed the registry write.
    """
    pending = reg.records.find(model, version, target, state="pending")
    if not pending:
        return False
    ev = reg.evaluate(model, version, target, facts)
    if not ev.decision.allowed:
        return False
    return apply(reg, pending[0], by)


def apply(reg: RegistryGuard, req: PromotionRequest, by: str) -> bool:
    """Claim ``req`` (pending → promoted) and write the registry; ``False`` if already claimed."""
    if not reg.records.close(req.id, "promoted", by=by):
        return False
    from mlflow.entities.model_registry import ModelVersionTag

    from mlflow_guard.registry.artifacts import registry_store

    store = registry_store()
    try:
        if req.target.kind == "alias":
            store.set_registered_model_alias(req.model, req.target.name, req.version)
        elif req.target.kind == "stage":
            store.transition_model_version_stage(req.model, req.version, req.target.name, False)
        else:
            tag = ModelVersionTag(req.target.name, req.tag_value or "approved")  # type: ignore[no-untyped-call]
            store.set_model_version_tag(req.model, req.version, tag)
    except Exception:
        reg.records.reopen(req.id)
        raise
    return True
