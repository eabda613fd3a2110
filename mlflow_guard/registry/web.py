"""Reviewer pages under ``/guard/``: pending promotion requests, their gates and approvals.

``GET /guard/`` lists every pending request the caller may read, each with the server's facts
(signature, recomputed root digest, scan result, lineage), every metric gate with its numbers,
the approvals so far (counted, ignored with why, rejections) and the decision. Approve/reject
buttons appear only for users who hold ``approve`` on the model and an approver role of the
target. Decisions are posted as JSON by the page's script to ``POST /guard/decide`` with a
CSRF token (HMAC-SHA256 over the user and request id under a secret shared by the replicas
through the guard database); a form post from another site is not JSON and is refused by the
guard layer, a JSON post without the right token is refused here. Every value is HTML-escaped;
the Content-Security-Policy allows only the page's own nonce'd script and style.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from html import escape
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from mlflow_guard.core import access
from mlflow_guard.core.access import Principal, Resource
from mlflow_guard.core.decision import Decision
from mlflow_guard.core.errors import GuardError
from mlflow_guard.core.policy import Action
from mlflow_guard.registry import service, tables
from mlflow_guard.registry.enforce import RegistryGuard
from mlflow_guard.registry.records import DuplicateApproval, PromotionRequest

BP = "mlflow_guard_web"
MAX_SHOWN = 25  # each request shown is re-verified (artifacts rehashed) on every page view

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
.req{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}
.pass{color:#166534}.fail{color:#b91c1c;font-weight:bold}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left}
code{font-size:.9em}button{margin-right:.5em}
"""

_SCRIPT = """
document.querySelectorAll('button[data-decision]').forEach(function (b) {
  b.addEventListener('click', function () {
    var box = b.closest('.req');
    fetch(location.origin + '/guard/decide', {method: 'POST', credentials: 'same-origin',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({id: Number(box.dataset.id), decision: b.dataset.decision,
        csrf: box.dataset.csrf, comment: box.querySelector('input').value})})
      .then(function (r) { return r.json().then(function (j) {
        box.querySelector('.result').textContent = r.ok ? 'recorded' : (j.message || r.status);
        if (r.ok) { location.reload(); } }); });
  });
});
"""


def _secret(reg: RegistryGuard) -> bytes:
    """The CSRF secret shared by every replica (created once in the guard database)."""
    t = tables.web_secret
    with reg.records.engine.connect() as conn:
        row = conn.execute(select(t.c.secret).where(t.c.id == 1)).first()
    if row is None:
        try:
            with reg.records.engine.begin() as conn:
                conn.execute(insert(t).values(id=1, secret=secrets.token_hex(32)))
        except IntegrityError:
            pass  # another replica created it first
        with reg.records.engine.connect() as conn:
            row = conn.execute(select(t.c.secret).where(t.c.id == 1)).first()
    assert row is not None
    return bytes.fromhex(str(row.secret))


def csrf_token(secret: bytes, user: str, request_id: int) -> str:
    """Token binding a decision form to one user and one request."""
    msg = f"guard-web-decision\x00{user}\x00{request_id}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def may_review(reg: RegistryGuard, p: Principal, req: PromotionRequest) -> bool:
    """Whether ``p`` may approve ``req`` at all (``approve`` on the model and an approver role)."""
    if not access.decide(reg.policy, p, Action.APPROVE, Resource("model", req.model)).allowed:
        return False
    rule = reg.rule_for(req.target)
    if rule is None:
        return False
    if not rule.approver_roles:
        return True
    return bool(set(access.roles_of(reg.policy, p.user)) & set(rule.approver_roles))


def _render_request(reg: RegistryGuard, p: Principal, req: PromotionRequest, secret: bytes) -> str:
    ev = reg.evaluate(req.model, req.version, req.target)
    st = service.status_json(ev)
    facts = st["version"] or {}
    e = escape
    out = [
        f'<div class="req" data-id="{req.id}" data-csrf="{csrf_token(secret, p.user, req.id)}">',
        f"<h2>{e(req.model)} version {e(req.version)} &rarr; {e(str(req.target))}</h2>",
        f"<p>requested by {e(req.requested_by)} at {e(req.requested_at.isoformat())}"
        + (f": {e(req.comment)}" if req.comment else "")
        + "</p>",
        "<p><b>decision:</b> "
        + (
            '<span class="pass">allowed</span>'
            if st["allowed"]
            else '<span class="fail">blocked</span>'
        )
        + "</p><ul>"
        + "".join(f"<li>{e(r)}</li>" for r in st["reasons"])
        + "</ul>",
        "<table><tr><th>signature</th><td>"
        + e(f"{facts.get('signer') or 'none'} ({(facts.get('signer_key_id') or '')[:16]})")
        + "</td></tr><tr><th>root digest (recomputed)</th><td><code>"
        + e(str(facts.get("root_digest")))
        + "</code></td></tr><tr><th>scan</th><td>"
        + e(str(facts.get("scan")))
        + "</td></tr><tr><th>lineage</th><td>"
        + e(", ".join(f"{k}={v}" for k, v in (facts.get("lineage") or {}).items()) or "none")
        + (
            f" (attestation {e(str(facts['lineage_digest'])[:16])})"
            if facts.get("lineage_digest")
            else ""
        )
        + "</td></tr><tr><th>run / version creator</th><td>"
        + e(f"{facts.get('run_creator')} / {facts.get('version_creator')}")
        + "</td></tr></table>",
        "<h3>gates</h3><table><tr><th>metric</th><th>value</th><th>needs</th><th></th></tr>",
    ]
    for g in st["gates"]:
        verdict = (
            '<span class="pass">pass</span>' if g["passed"] else '<span class="fail">FAIL</span>'
        )
        value = "missing" if g["value"] is None else f"{g['value']:g}"
        out.append(
            f"<tr class='gate'><td>{e(g['metric'])}</td><td>{e(value)}</td>"
            f"<td>{e(g['expression'])}</td><td>{verdict}</td></tr>"
        )
    out.append("</table><h3>approvals</h3><ul class='approvals'>")
    out += [
        f"<li>counted: {e(a['approver'])} ({e(a['kind'])}) {e(a['comment'])}</li>"
        for a in st["counted"]
    ]
    out += [f"<li>rejected: {e(a['approver'])} {e(a['comment'])}</li>" for a in st["rejections"]]
    out += [f"<li>ignored: {e(a['approver'])}: {e(a['why'])}</li>" for a in st["ignored"]]
    out.append(f"</ul><p>{len(st['counted'])} of {e(str(st['required']))} required</p>")
    if may_review(reg, p, req):
        out.append(
            '<input name="comment" placeholder="comment" maxlength="2000">'
            '<button data-decision="approve">Approve</button>'
            '<button data-decision="reject">Reject</button>'
        )
    out.append('<span class="result"></span></div>')
    return "\n".join(out)


def install(app: Any, guard: Any, reg: RegistryGuard) -> None:
    """Mount the pages and give them their route decisions (authenticated; checks inside)."""
    from flask import Blueprint, Response, g, jsonify, request

    from mlflow_guard.server.routes import AUTHENTICATED, register_guard_route

    bp = Blueprint(BP, __name__, url_prefix="/guard")

    def me() -> Principal:
        principal: Principal | None = g.mlflow_guard_verdict.principal
        assert principal is not None
        return principal

    def headers(nonce: str) -> dict[str, str]:
        return {
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
            ),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }

    @bp.get("/")
    def index() -> Any:
        p = me()
        secret = _secret(reg)
        nonce = secrets.token_urlsafe(16)
        pending = [
            r
            for r in reg.records.find(state="pending", limit=MAX_SHOWN)
            if access.decide(reg.policy, p, Action.READ, Resource("model", r.model)).allowed
        ]
        body = "\n".join(_render_request(reg, p, r, secret) for r in pending) or (
            "<p>No pending promotion requests.</p>"
        )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>mlflow-guard reviews</title>"
            f"<style nonce='{nonce}'>{_STYLE}</style></head><body>"
            f"<h1>Pending promotions</h1><p>signed in as <b>{escape(p.user)}</b></p>{body}"
            f"<script nonce='{nonce}'>{_SCRIPT}</script></body></html>"
        )
        return Response(page, 200, headers=headers(nonce), mimetype="text/html")

    @bp.post("/decide")
    def decide() -> Any:
        p = me()
        b = request.get_json(silent=True)
        if not isinstance(b, dict) or not request.is_json:
            return jsonify({"message": "expected a JSON body"}), 400
        try:
            req = reg.records.get(int(b.get("id", -1)))
        except (TypeError, ValueError):
            req = None
        kind = b.get("decision")
        if req is None or kind not in ("approve", "reject"):
            return jsonify({"message": "unknown request or decision"}), 400
        token = str(b.get("csrf", ""))
        if not hmac.compare_digest(token, csrf_token(_secret(reg), p.user, req.id)):
            guard.record(p, f"web {kind} #{req.id}", Decision.deny("csrf", "bad CSRF token"))
            return jsonify({"message": "mlflow-guard: CSRF token missing or invalid"}), 403
        if not may_review(reg, p, req):
            guard.record(p, f"web {kind} #{req.id}", Decision.deny("web-review", "no role"))
            return jsonify({"message": f"mlflow-guard: {p.user} may not review this request"}), 403
        body = {"name": req.model, "version": req.version, "target": str(req.target)}
        body["comment"] = str(b.get("comment", ""))
        what = f"web {kind} {req.model} v{req.version} -> {req.target}"
        try:
            a, ev = service.decide(reg, p, kind, body)
        except (service.Refused, DuplicateApproval) as e:
            guard.record(p, what, Decision.deny(f"promotion-{kind}", e.summary))
            return jsonify({"message": f"mlflow-guard: {e.summary}"}), getattr(e, "status", 409)
        except GuardError as e:
            return jsonify({"message": f"mlflow-guard: {e.summary}"}), 400
        if not guard.record(p, what, Decision.allow(f"promotion-{kind}", a.root_digest)):
            return jsonify({"message": "mlflow-guard: audit log unavailable"}), 503
        promoted = False
        if ev.decision.allowed:
            promoted = service.apply_if_ready(reg, a.model, a.version, a.target, p.user, ev.facts)
            if promoted:
                guard.record(p, f"promote {a.model} v{a.version} -> {a.target}", ev.decision)
        return jsonify({"recorded": kind, "promoted": promoted})

    register_guard_route(f"{BP}.index", AUTHENTICATED)
    register_guard_route(f"{BP}.decide", AUTHENTICATED)
    app.register_blueprint(bp)
