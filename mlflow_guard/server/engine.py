"""The guard engine: authenticate, resolve, decide, audit — one call per request.

Framework-neutral: the Flask layer and the ASGI layer both build a
:class:`~mlflow_guard.server.request_view.RequestView` and act on the :class:`Verdict`. Every
decision (allow and deny) is appended to the audit chain *before* the request proceeds; if the
append fails the request is denied with 503.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from mlflow_guard.core import access
from mlflow_guard.core.access import SERVER, Principal, Resource
from mlflow_guard.core.audit import AuditEvent
from mlflow_guard.core.decision import Decision
from mlflow_guard.core.errors import PolicyError
from mlflow_guard.core.policy import Action, Policy
from mlflow_guard.server import resolve
from mlflow_guard.server.authn import Authenticator, AuthFailure
from mlflow_guard.server.hardening import (
    GUARD_TAG_PREFIX,
    RUN_AUTHOR_TAG,
    copy_source,
    guard_tag_keys,
    run_author_rewrite,
    source_run_and_experiment,
    split_copied_guard_tags,
)
from mlflow_guard.server.policy_watch import PolicyWatch
from mlflow_guard.server.request_view import BadRequest, NotFound, RequestView
from mlflow_guard.server.routes import TAG_KEY_ENDPOINTS, RouteSpec, spec_for

_log = logging.getLogger(__name__)
USER_TAG = GUARD_TAG_PREFIX + "user"
AUTH_TAG = GUARD_TAG_PREFIX + "auth"
NAME_CHANGING_ENDPOINTS = frozenset(
    {"_update_experiment", "_delete_experiment", "_restore_experiment"}
)


@dataclass
class Verdict:
    """What to do with a request.

    Attributes:
        status: 0 to let it through, else the HTTP status to answer with.
        message: one line for the error response.
        reasons: the decision's reasons.
        request_id: id shared by the audit entry and the ``X-Request-Id`` header.
        principal: the authenticated caller, when known.
        body: a replacement JSON body for MLflow (identity binding), or ``None``.
    """

    status: int
    message: str = ""
    reasons: list[str] = field(default_factory=list)
    request_id: str = ""
    principal: Principal | None = None
    body: dict[str, Any] | None = None

    @property
    def allowed(self) -> bool:
        """Whether the request may proceed."""
        return self.status == 0


class Guard:
    """Holds the policy, the stores and the caches of one server worker.

    Args:
        policy: the loaded policy, or a :class:`PolicyWatch` that reloads it when its files
            change (the server's case; checked at the start of every request).
        store: the guard store (tokens, revision counter, audit chain).
        users: MLflow's basic-auth user store, initialised.
        auth_cache_seconds: bound on reuse of a verified credential.
    """

    def __init__(
        self, policy: Policy | PolicyWatch, store: Any, users: Any, auth_cache_seconds: int
    ) -> None:
        self.watch = policy if isinstance(policy, PolicyWatch) else PolicyWatch(policy)
        self.store = store
        self.users = users
        self.authn = Authenticator(users, store, auth_cache_seconds)
        self.backend = resolve.Backend(self.authn.request_revision)
        self.registry: Any = None  # mlflow_guard.registry.enforce.RegistryGuard, when mounted

    @property
    def policy(self) -> Policy:
        """The current policy (see :class:`PolicyWatch`)."""
        return self.watch.policy

    # -- entry point ----------------------------------------------------------------------

    def check(self, view: RequestView) -> Verdict:
        """Decide on one request (never raises)."""
        rid = uuid.uuid4().hex
        try:
            self.watch.refresh()
        except PolicyError as e:
            return Verdict(
                503, f"{e.summary}. Next step: {e.hint}", list(e.details), request_id=rid
            )
        except Exception as e:  # fail closed: check() never raises
            _log.exception("guard: checking the policy files failed")
            return Verdict(
                503, f"guard cannot check its policy: {type(e).__name__}", request_id=rid
            )
        spec = spec_for(view.endpoint)
        if spec is not None and spec.resolver == "public":
            return Verdict(0, request_id=rid)
        principal = self._authenticate(view, rid)
        if isinstance(principal, Verdict):
            return principal
        view.principal = principal
        action = spec.action.value if spec and spec.action else "access"
        what = f"{action} {view.method} {view.path}"
        resources: list[Resource] = []
        status = 403
        try:
            if spec is None:
                decision = Decision.deny(
                    "unmapped-route",
                    f"route {view.method} {view.path} has no guard decision; denied (fail closed)",
                    "if this route should be reachable, extend mlflow_guard.server.routes",
                )
            else:
                decision, resources = self._authorize(spec, view, principal)
        except BadRequest as e:
            decision, status = Decision.deny("bad-request", str(e)), e.status
        except NotFound as e:
            decision, status = Decision.deny("not-found", str(e)), 404
        except Exception as e:
            _log.exception("guard: resolving %s %s failed", view.method, view.path)
            decision = Decision.deny("resolve-failed", f"guard could not resolve the resource: {e}")
            status = 503
        target = ",".join(str(r) for r in resources) or (view.endpoint or view.path)
        verdict = self._finish(rid, principal.user, what, target, decision, status)
        verdict.principal = principal
        if verdict.allowed:
            verdict.body = self._bind_identity(view, principal)
        return verdict

    def _authenticate(self, view: RequestView, rid: str) -> Principal | Verdict:
        """The caller, or the refusal to send: 401 (audited) or 503 when the backend fails."""
        try:
            return self.authn.authenticate(view.headers.get("authorization"))
        except AuthFailure as e:
            return self._finish(
                rid, "-", "authenticate", view.path, Decision.deny("authn", str(e)), 401
            )
        except Exception as e:
            _log.exception("guard: authentication backend failed")
            return Verdict(
                503, f"guard cannot authenticate right now: {type(e).__name__}", request_id=rid
            )

    def may(self, principal: Principal, action: Action, resource: Resource) -> bool:
        """Pure policy check (used to filter list responses)."""
        return access.decide(self.policy, principal, action, resource).allowed

    # -- internals ------------------------------------------------------------------------

    def _finish(
        self, rid: str, user: str, what: str, target: str, decision: Decision, status: int
    ) -> Verdict:
        outcome = "allow" if decision.allowed else "deny"
        try:
            self.store.append_audit(
                AuditEvent(
                    user=user,
                    action=what,
                    resource=target,
                    outcome=outcome,
                    reasons=[f"rule {decision.rule}", *decision.reasons],
                    request_id=rid,
                )
            )
        except Exception as e:
            _log.error("guard: audit append failed, denying: %s", e)
            return Verdict(
                503,
                "guard cannot record this decision in the audit log, so it is denied",
                [str(getattr(e, "summary", e))],
                rid,
            )
        if decision.allowed:
            return Verdict(0, request_id=rid)
        return Verdict(
            status,
            decision.reasons[0] if decision.reasons else "denied",
            list(decision.reasons),
            rid,
        )

    def _authorize(
        self, spec: RouteSpec, view: RequestView, principal: Principal
    ) -> tuple[Decision, list[Resource]]:
        bad = guard_tag_keys(
            view.body,
            key_field=view.endpoint in TAG_KEY_ENDPOINTS,
            extra=[str(view.view_args["tag_key"])] if "tag_key" in view.view_args else [],
        )
        if bad and view.endpoint == "_create_model_version":
            bad = self._drop_copied_guard_tags(view, bad)
        if bad:
            return Decision.deny(
                "guard-tag-namespace",
                f"tags {', '.join(sorted(set(bad)))} are in the server-only "
                f"'{GUARD_TAG_PREFIX}' namespace; clients may not write or delete them",
                "drop these tags from the request",
            ), []
        if rewrite := run_author_rewrite(view.endpoint, view.body, principal.user):
            return Decision.deny(
                "run-author-tag",
                f"{principal.user} may not {rewrite}: '{RUN_AUTHOR_TAG}' is bound to the "
                "authenticated user who created the run",
                f"drop '{RUN_AUTHOR_TAG}' from the request (the server sets it at runs/create)",
            ), []
        if spec.resolver == "authenticated":
            return Decision.allow("authenticated", f"{principal.user} is authenticated"), []
        assert spec.action is not None
        if spec.resolver == "server":
            return access.decide(self.policy, principal, spec.action, SERVER), [SERVER]
        if spec.resolver in ("any_experiment", "any_model"):
            kind: access.ResourceKind = (
                "experiment" if spec.resolver == "any_experiment" else "model"
            )
            if access.may_any(self.policy, principal, spec.action, kind):
                return Decision.allow("list", f"results are filtered to {kind}s you may read"), []
            return Decision.deny(
                "no-matching-rule", f"{principal.user} may not {spec.action.value} any {kind}"
            ), []
        if spec.resolver == "model_version_create":
            return self._registry_gate(self._model_version_create(view, principal), view, principal)
        resolver = resolve.RESOLVERS.get(spec.resolver)
        if resolver is None:
            return Decision.deny("unknown-resolver", f"no resolver {spec.resolver!r}"), []
        resources = resolver(view, self.backend)
        decisions = [access.decide(self.policy, principal, spec.action, r) for r in resources]
        for link in resolve.links(view, self.backend):
            decisions.append(self._linked(principal, link))
            resources.append(link.resource)
        resources = list(dict.fromkeys(resources))
        return self._registry_gate((Decision.all_of(decisions), resources), view, principal)

    def _linked(self, principal: Principal, link: resolve.Link) -> Decision:
        """The access decision for a :class:`~resolve.Link`; a denial says why it was needed."""
        d = access.decide(self.policy, principal, link.action, link.resource)
        if d.allowed:
            return d
        return Decision.deny("linked-resource", f"{link.why}: {d.reasons[0]}", *d.reasons[1:])

    def _registry_gate(
        self, result: tuple[Decision, list[Resource]], view: RequestView, principal: Principal
    ) -> tuple[Decision, list[Resource]]:
        """Registry gates and protected targets (issue 4) after the access decision allowed."""
        decision, resources = result
        if not decision.allowed or self.registry is None or view.endpoint is None:
            return result
        extra = self.registry.authorize(view.endpoint, view.body, principal)
        return (decision if extra is None else Decision.all_of([decision, extra])), resources

    def _drop_copied_guard_tags(self, view: RequestView, bad: list[str]) -> list[str]:
        """For a copy (``models:/NAME/VERSION`` source), drop server-only tags equal to the source
        version's own (``copy_model_version`` copies every tag); return the keys that differ.

        The dropped tags are not lost: the server writes its own identity and registration tags
        for the new version, after verifying its artifacts again.
        """
        copied = copy_source(view.param("source") or "")
        body = view.body
        if copied is None or not isinstance(body, dict) or not isinstance(body.get("tags"), list):
            return bad
        source = dict(self._copied_version(view, copied).tags or {})

        def key_value(t: object) -> tuple[str, object]:
            return (str(t.get("key", "")), t.get("value")) if isinstance(t, dict) else ("", None)

        kept, forged = split_copied_guard_tags(body["tags"], key_value, source)
        if forged:
            return forged
        body["tags"] = kept
        return []

    def _model_version_create(
        self, view: RequestView, principal: Principal
    ) -> tuple[Decision, list[Resource]]:
        model = resolve.model_name(view, self.backend)[0]
        source = view.param("source") or ""
        sources: list[Resource] = []
        copied = copy_source(source)
        if copied is not None:  # copy_model_version: read the source version's model
            self._copied_version(view, copied)  # 404 when it does not exist
            sources.append(Resource("model", copied[0]))
            run_id = model_id = exp_id = None
        else:
            run_id, model_id, exp_id = source_run_and_experiment(source)
        if run_id:
            sources.append(self.backend.run_experiment(run_id))
        if model_id:
            sources.append(self.backend.logged_model_experiment(model_id))
        if exp_id:
            sources.append(self.backend.experiment(exp_id))
        if claimed := view.param("run_id"):
            sources.append(self.backend.run_experiment(claimed))
        links: list[resolve.Link] = []
        if claimed_model := view.param("model_id"):  # MLflow tags that logged model
            exp = self.backend.logged_model_experiment(claimed_model)
            why = (
                f"logged model {claimed_model} of experiment {exp.name!r} would be linked to "
                "the new version (MLflow writes the version into the logged model's tags)"
            )
            links.append(resolve.Link(Action.LOG, exp, why))
        decisions = [access.decide(self.policy, principal, Action.REGISTER, model)]
        decisions += [access.decide(self.policy, principal, Action.READ, r) for r in sources]
        decisions += [self._linked(principal, link) for link in links]
        touched = [*sources, *(link.resource for link in links)]
        return Decision.all_of(decisions), [model, *dict.fromkeys(touched)]

    def _copied_version(self, view: RequestView, copied: tuple[str, str]) -> Any:
        """The source version of a copy, read from the registry once per request (404 if none)."""
        cache = view.memo.get("copied_version")
        if cache is None or cache[0] != copied:
            cache = view.memo["copied_version"] = (copied, self.backend.model_version(*copied))
        return cache[1]

    def _bind_identity(self, view: RequestView, principal: Principal) -> dict[str, Any] | None:
        if view.endpoint not in (
            "_create_run",
            "_create_model_version",
            "_create_logged_model",
            "_create_registered_model",
        ) or not isinstance(view.body, dict):
            return None
        body = dict(view.body)
        tags = body.get("tags") or []
        if not isinstance(tags, list):
            return None
        tags = [t for t in tags if not (isinstance(t, dict) and t.get("key") == "mlflow.user")]
        tags.append({"key": USER_TAG, "value": principal.user})
        tags.append({"key": AUTH_TAG, "value": principal.via})
        if view.endpoint == "_create_run":
            body["user_id"] = principal.user
            tags.append({"key": "mlflow.user", "value": principal.user})
        body["tags"] = tags
        return body

    def credentials_valid(self, view: RequestView) -> bool:
        """Whether the request's credentials authenticate now, without an audit entry
        (:meth:`check` records the decision). Lets the ASGI layer buffer a request body (an
        OTLP export) only for an authenticated caller; a refusal here is decided by ``check``."""
        try:
            self.authn.authenticate(view.headers.get("authorization"))
        except Exception:  # anything but success: no body is read, check() decides
            return False
        return True

    def refuse_malformed(self, view: RequestView, message: str, status: int) -> Verdict:
        """Refuse a request guard could not parse, audited like any decision.

        An unauthenticated caller gets 401 (the parse error is not revealed to it).
        """
        rid = uuid.uuid4().hex
        principal = self._authenticate(view, rid)
        if isinstance(principal, Verdict):
            return principal
        what = f"access {view.method} {view.path}"
        verdict = self._finish(
            rid,
            principal.user,
            what,
            view.endpoint or view.path,
            Decision.deny("bad-request", message),
            status,
        )
        verdict.principal = principal
        return verdict

    def after_change(self, endpoint: str | None) -> None:
        """Bump the revision after a change that invalidates cached facts (experiment names)."""
        if endpoint in NAME_CHANGING_ENDPOINTS:
            try:
                self.store.bump_revision()
            except Exception as e:
                _log.error("guard: could not bump the revision after %s: %s", endpoint, e)

    def record(self, principal: Principal, what: str, decision: Decision) -> bool:
        """Audit an extra decision made inside a handler; ``False`` when the append failed."""
        v = self._finish(uuid.uuid4().hex, principal.user, what, "server:*", decision, 403)
        return v.status != 503
