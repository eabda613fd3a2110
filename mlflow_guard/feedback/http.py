"""The collector endpoint: a Flask blueprint the guard server mounts.

Routes (all under ``/api/2.0/mlflow-guard/feedback``):

- ``POST /api/2.0/mlflow-guard/feedback`` — body: a JSONL batch of signed records
  (``application/x-ndjson``). Each record authenticates its own source by its signature; the
  caller must be an authenticated server user. Answer: ``200`` with the batch summary
  (accepted count, and per rejected line its reason and quarantine id); ``413`` when the batch
  exceeds the policy's size limits (nothing is stored: the sender keeps its data); ``415`` for
  another content type.
- ``GET /api/2.0/mlflow-guard/feedback/quarantine`` — entries (without raw bytes); admin.
- ``POST /api/2.0/mlflow-guard/feedback/quarantine/release`` — ``{"qid": "..."}``: re-verify
  and move the record to the accepted table; admin.

Accepted records go to ``guard_feedback_accepted`` and rejected ones to
``guard_feedback_quarantine`` in the guard database: replicas share nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlflow_guard.core import access
from mlflow_guard.core.errors import GuardError
from mlflow_guard.core.policy import Policy
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.feedback.admin import require_admin
from mlflow_guard.feedback.destinations import TableDestination, TableQuarantineSink
from mlflow_guard.feedback.ingest import Ingestor, split_lines
from mlflow_guard.feedback.quarantine import QUARANTINED, Entry
from mlflow_guard.feedback.store import FeedbackStore, Tx

BLUEPRINT_NAME = "guard_feedback"
PREFIX = "/api/2.0/mlflow-guard/feedback"
CONTENT_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-seq")

PrincipalGetter = Callable[[], access.Principal | None]


def _default_principal() -> access.Principal | None:
    from flask import g

    p = g.get("guard_principal")
    return p if isinstance(p, access.Principal) else None


def create_blueprint(
    policy: Policy | Callable[[], Policy],
    store: FeedbackStore,
    *,
    principal: PrincipalGetter = _default_principal,
    trust: TrustStore | None = None,
    trust_of: Callable[[Policy], TrustStore] | None = None,
    clock: Callable[[], float] = time.time,
    register_routes: bool = True,
) -> Any:
    """Build the collector blueprint.

    Args:
        policy: the server's policy (feedback section, keys, roles/access for admin routes), or
            a function returning the current one (the server's policy watcher: a reloaded
            policy applies at the next request).
        store: the guard database's feedback tables.
        principal: returns the authenticated caller of the current request (default:
            ``flask.g.guard_principal``); ``None`` means unauthenticated and is refused with 401.
        trust: trust store (built from ``policy`` if not given; only with a fixed policy).
        trust_of: with a policy function, the trust store of a policy (the server passes its
            policy watcher's, so the collector shares the one store built per reload).
        clock: Unix time source.
        register_routes: give the endpoints their decisions in the server's route map
            (:func:`mlflow_guard.server.routes.register_guard_route`).
    """
    from flask import Blueprint, Response, jsonify, request

    bp = Blueprint(BLUEPRINT_NAME, __name__)
    current: Callable[[], Policy] = policy if callable(policy) else (lambda: policy)
    built: list[Ingestor] = []

    def ingestor_now() -> Ingestor:
        """The ingestor of the current policy (rebuilt when the policy object changes)."""
        pol = current()
        if not built or built[-1].policy is not pol:
            built[:] = [
                Ingestor(
                    pol,
                    store,
                    TableDestination(),
                    TableQuarantineSink(),
                    trust=(
                        trust
                        if not callable(policy)
                        else (trust_of(pol) if trust_of is not None else None)
                    ),
                    clock=clock,
                )
            ]
        return built[-1]

    def error(status: int, message: str, hint: str = "") -> tuple[Response, int]:
        return jsonify({"ok": False, "error": message, "hint": hint}), status

    def caller() -> access.Principal | None:
        return principal()

    @bp.post(PREFIX)
    def ingest_feedback() -> Any:
        if caller() is None:
            return error(401, "authentication required", "send a guard API token or basic auth")
        ctype = (request.mimetype or "").lower()
        if ctype not in CONTENT_TYPES:
            return error(
                415,
                f"expected a JSONL batch ({CONTENT_TYPES[0]}), got {ctype or 'no content type'}",
                "send one signed record per line with Content-Type: application/x-ndjson",
            )
        ingestor = ingestor_now()
        limit = ingestor.fp.max_batch_bytes
        if request.content_length is not None and request.content_length > limit:
            return error(
                413, f"batch is {request.content_length} bytes; limit is {limit}", "split the batch"
            )
        data = request.stream.read(limit + 1)
        if len(data) > limit:
            return error(413, f"batch exceeds {limit} bytes", "split the batch")
        lines = split_lines(data)
        too_big = ingestor.oversized(lines)
        if too_big:
            return error(413, too_big, "split the batch")
        try:
            result = ingestor.ingest_lines(lines)
        except GuardError as e:
            return error(500 if e.exit_code == 3 else 400, e.summary, e.hint)
        return jsonify({"ok": not result.quarantined, **result.summary()}), 200

    @bp.get(f"{PREFIX}/quarantine")
    def list_feedback_quarantine() -> Any:
        denied = _admin_denied()
        if denied is not None:
            return denied
        status = request.args.get("status", QUARANTINED)
        rows = store.quarantine_rows(None if status == "all" else status)
        entries = [Entry.from_row(r).to_json(with_raw=request.args.get("raw") == "1") for r in rows]
        return jsonify({"ok": True, "entries": entries})

    @bp.post(f"{PREFIX}/quarantine/release")
    def release_feedback_quarantine() -> Any:
        denied = _admin_denied()
        if denied is not None:
            return denied
        body = request.get_json(silent=True) or {}
        qid = body.get("qid") if isinstance(body, dict) else None
        if not isinstance(qid, str) or not qid:
            return error(400, 'expected JSON {"qid": "..."}', "take the qid from the list route")
        rows = [r for r in store.quarantine_rows(QUARANTINED) if r["qid"] == qid]
        if not rows:
            return error(404, f"no quarantined entry {qid}")
        entry = Entry.from_row(rows[0])
        p = caller()
        assert p is not None
        now = clock()

        def mark(tx: Tx) -> bool:
            return store.mark_released(tx, qid, p.user, now)

        try:
            rec = ingestor_now().release(entry, p.user, mark)
        except GuardError as e:
            return error(409, e.summary, e.hint)
        return jsonify({"ok": True, "qid": qid, "source": rec.source, "id": rec.id})

    def _admin_denied() -> tuple[Response, int] | None:
        p = caller()
        if p is None:
            return error(401, "authentication required", "send a guard API token or basic auth")
        try:
            require_admin(current(), p)
        except GuardError as e:
            return error(403, e.summary, e.hint)
        return None

    if register_routes:
        from mlflow_guard.server import routes

        routes.register_guard_route(f"{BLUEPRINT_NAME}.ingest_feedback", routes.AUTHENTICATED)
        routes.register_guard_route(
            f"{BLUEPRINT_NAME}.list_feedback_quarantine", routes.SERVER_ADMIN
        )
        routes.register_guard_route(
            f"{BLUEPRINT_NAME}.release_feedback_quarantine", routes.SERVER_ADMIN
        )
    return bp
