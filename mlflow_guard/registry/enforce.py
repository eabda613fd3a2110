"""Enforcement of registry gates on every registry mutation the guard server sees.

:meth:`RegistryGuard.authorize` runs after the access decision allowed a request and before
MLflow handles it. It finds the protected targets (policy ``registry.protected``) a request
would set, move or delete and decides:

* **setting** a protected alias, stage or model-version tag on a version (set alias, transition
  stage, set tag) needs the full promotion check: registration gates still hold (digest
  recomputed now), metric gates, approvals (:func:`mlflow_guard.core.approvals.evaluate`);
* **removing** one (delete alias or tag, moving a version out of a protected stage, archiving
  the versions that hold it, updating a version that holds one) needs a server admin;
* **destroying** a holder (delete version, delete or rename the registered model) is refused for
  everyone while it holds a protected target: remove the target first (admin, audited);
* ``create_model_version`` (and so ``copy_model_version``) runs the registration gate over the
  artifacts the server resolves itself, and binds its results as server-written tags.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mlflow_guard.core import access
from mlflow_guard.core.access import SERVER, Principal
from mlflow_guard.core.approvals import (
    Approval,
    PromotionStatus,
    ProtectedRule,
    Target,
    evaluate,
    protected_rule,
)
from mlflow_guard.core.decision import Decision
from mlflow_guard.core.errors import GuardError
from mlflow_guard.core.policy import Action, Policy, Purpose
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.registry.artifacts import registry_store
from mlflow_guard.registry.records import RegistryRecords
from mlflow_guard.registry.subject import VersionFacts, establish

REGISTRY_ENDPOINTS = frozenset(
    {
        "_create_model_version",
        "_create_registered_model",
        "_set_registered_model_alias",
        "_delete_registered_model_alias",
        "_transition_stage",
        "_set_model_version_tag",
        "_delete_model_version_tag",
        "_set_registered_model_tag",
        "_delete_registered_model_tag",
        "_update_model_version",
        "_delete_model_version",
        "_delete_registered_model",
        "_rename_registered_model",
    }
)


@dataclass
class Evaluation:
    """A promotion check: the server's facts, the approval status and the decision."""

    facts: VersionFacts | None
    status: PromotionStatus | None
    decision: Decision


def _str(params: Any, name: str) -> str:
    v = params.get(name) if isinstance(params, dict) else None
    return "" if v is None else str(v)


def _tag_keys(params: dict[str, Any]) -> list[str]:
    tags = params.get("tags")
    if not isinstance(tags, list):
        return []
    return [str(t.get("key", "")) for t in tags if isinstance(t, dict)]


class RegistryGuard:
    """Registry decisions of one server worker (state lives in the guard database).

    Args:
        policy: the loaded policy (``registry`` section, roles, keys), or a function returning
            the current one (the server passes its policy watcher's, so a reloaded policy and
            its trust store apply at the next request).
        database_uri: the guard database for approvals and promotion requests.
        trust_of: the trust store of a policy (the server passes its watcher's, so one store
            serves every component per reload); default: built once per policy here.
    """

    def __init__(
        self,
        policy: Policy | Callable[[], Policy],
        database_uri: str,
        trust_of: Callable[[Policy], TrustStore] = TrustStore.from_policy,
    ) -> None:
        self._current: Callable[[], Policy] = policy if callable(policy) else (lambda: policy)
        self.records = RegistryRecords(database_uri)
        self._trust_of = trust_of
        self._trust: tuple[Policy, TrustStore] | None = None
        self._lock = threading.Lock()

    @property
    def policy(self) -> Policy:
        """The current policy."""
        return self._current()

    @property
    def trust(self) -> TrustStore:
        """The current policy's trust store (read once per policy)."""
        policy = self._current()
        with self._lock:
            if self._trust is None or self._trust[0] is not policy:
                self._trust = (policy, self._trust_of(policy))
            return self._trust[1]

    def rule_for(self, target: Target) -> ProtectedRule | None:
        """The protected-target entry for ``target``, or ``None`` (case-insensitive names)."""
        return protected_rule(self.policy.registry.protected, target)

    def is_admin(self, principal: Principal) -> bool:
        """Server admin (MLflow admin flag, or a role granted admin on everything)."""
        return access.decide(self.policy, principal, Action.ADMIN, SERVER).allowed

    # -- promotion check --------------------------------------------------------------

    def evaluate(
        self, model: str, version: str, target: Target, facts: VersionFacts | None = None
    ) -> Evaluation:
        """The full promotion check of ``model`` version ``version`` for ``target``.

        ``facts`` established earlier *in the same request* may be passed to skip rehashing.
        """
        name = f"protected:{target}"
        rule = self.rule_for(target)
        if rule is None:
            return Evaluation(None, None, Decision.allow(name, f"{target} is not protected"))
        try:
            if facts is None or facts.subject is None or facts.subject.target != target:
                facts = establish(self.policy, self.trust, model, version, target)
        except GuardError as e:
            return Evaluation(None, None, Decision.deny(name, f"registration: {e.summary}"))
        except Exception as e:  # MLflow store errors: version missing, store down
            msg = getattr(e, "message", None) or str(e)
            return Evaluation(None, None, Decision.deny(name, f"{model} version {version}: {msg}"))
        approvals, untrusted = self._still_trusted(self.records.approvals(model, version, target))
        if facts.subject is None:
            return Evaluation(facts, None, Decision.deny(name, *facts.problems))
        status = evaluate(facts.subject, rule, approvals, self.policy.roles)
        if untrusted:
            status = replace(status, ignored=(*status.ignored, *untrusted))
        if facts.problems:
            reasons = [*facts.problems, *status.decision.reasons]
            return Evaluation(facts, status, Decision.deny(name, *reasons))
        return Evaluation(facts, status, status.decision)

    def _still_trusted(
        self, recorded: list[Approval]
    ) -> tuple[list[Approval], list[tuple[Approval, str]]]:
        """Drop signed approvals whose key is no longer trusted (revoked, expired, removed)."""
        kept, dropped = [], []
        for a in recorded:
            if a.kind == "signed":
                try:
                    self.trust.resolve(a.key_id or "", Purpose.APPROVAL)
                except GuardError as e:
                    dropped.append((a, f"was signed by a key no longer trusted: {e.summary}"))
                    continue
            kept.append(a)
        return kept, dropped

    # -- request hook -------------------------------------------------------------------

    def authorize(self, endpoint: str, body: Any, principal: Principal) -> Decision | None:
        """Decide on a registry mutation; ``None`` when it touches nothing protected.

        ``body`` is the parsed request (MLflow's registry mutations are JSON POST/PATCH/DELETE);
        for ``_create_model_version`` the registration tags are added to ``body['tags']``.
        """
        if endpoint not in REGISTRY_ENDPOINTS:
            return None
        p = body if isinstance(body, dict) else {}
        name = _str(p, "name")
        if endpoint in ("_create_model_version", "_create_registered_model"):
            protected = [Target("tag", k) for k in _tag_keys(p) if self.rule_for(Target("tag", k))]
            if protected:
                return Decision.deny(
                    "protected-tag",
                    f"protected {', '.join(map(str, protected))} cannot be set at creation: "
                    "request a promotion after registration "
                    "(`mlflow-guard promote request NAME VERSION --to tag:KEY`)",
                )
            if endpoint == "_create_registered_model":
                return None
            return self._register(p, name)
        if endpoint == "_set_registered_model_alias":
            return self._set(name, _str(p, "version"), Target("alias", _str(p, "alias")), principal)
        if endpoint == "_set_model_version_tag":
            return self._set(name, _str(p, "version"), Target("tag", _str(p, "key")), principal)
        if endpoint == "_transition_stage":
            return self._transition(p, name, principal)
        held = self._held(name, _str(p, "version") or None)
        if endpoint == "_delete_registered_model_alias":
            removing = [t for t in held if t == Target("alias", _str(p, "alias"))]
        elif endpoint == "_delete_model_version_tag":
            removing = [t for t in held if t == Target("tag", _str(p, "key"))]
        elif endpoint in ("_set_registered_model_tag", "_delete_registered_model_tag"):
            key = _str(p, "key")
            removing = [Target("tag", key)] if self.rule_for(Target("tag", key)) else []
        elif endpoint == "_update_model_version":
            removing = held
        else:
            if not held:
                return None
            return Decision.deny(
                "protected-holder",
                f"{endpoint.strip('_').replace('_', ' ')} refused: {name} holds protected "
                f"{', '.join(map(str, held))}; a server admin must first remove "
                "them (delete the alias/tag or archive the version), then retry",
            )
        return self._admin_only(removing, principal)

    def _admin_only(self, removing: list[Target], principal: Principal) -> Decision | None:
        if not removing:
            return None
        what = ", ".join(map(str, removing))
        if self.is_admin(principal):
            return Decision.allow(
                "protected-removal", f"server admin {principal.user} changes {what}"
            )
        return Decision.deny(
            "protected-removal",
            f"changing or removing protected {what} needs a server admin; {principal.user} is not "
            "one",
            "ask a server admin (the change is audited)",
        )

    def _set(
        self, name: str, version: str, target: Target, principal: Principal
    ) -> Decision | None:
        if self.rule_for(target) is None:
            return None
        if not version:
            return Decision.deny(f"protected:{target}", "missing model version")
        ev = self.evaluate(name, version, target)
        d = ev.decision
        if d.allowed:
            for req in self.records.find(name, version, target, state="pending"):
                self.records.close(req.id, "promoted", by=principal.user)
            return d
        summary = f"{target} for {name} version {version} refused: " + " | ".join(d.reasons)
        return Decision.deny(d.rule, summary, *d.reasons)

    def _transition(self, p: dict[str, Any], name: str, principal: Principal) -> Decision | None:
        version, stage = _str(p, "version"), _str(p, "stage")
        target = Target("stage", stage.capitalize() if stage.lower() != "none" else "None")
        held = [t for t in self._held(name, version) if t.kind == "stage"]
        removing = [t for t in held if t != target]
        archive = str(p.get("archive_existing_versions", "")).lower() == "true"
        if archive and self.rule_for(target) is None:
            pass
        elif archive:
            removing += [t for t in self._stage_holders(name, target) if t not in removing]
        d = self._admin_only(removing, principal)
        if d is not None and not d.allowed:
            return d
        s = self._set(name, version, target, principal)
        return s if s is not None else d

    # -- what versions hold ------------------------------------------------------------

    def _held(self, name: str, version: str | None) -> list[Target]:
        """Protected targets held by ``version`` of ``name`` (every version when ``None``)."""
        if not name or not self.policy.registry.protected:
            return []
        from mlflow.exceptions import MlflowException

        reg = registry_store()
        try:
            rm = reg.get_registered_model(name)
        except MlflowException as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST":
                return []  # MLflow answers 404 itself
            raise
        held: list[Target] = []
        raw = rm.aliases or {}
        pairs = raw.items() if isinstance(raw, dict) else ((a.alias, a.version) for a in raw)
        for alias, v in pairs:
            if version is None or str(v) == str(version):
                held.append(Target("alias", str(alias)))
        if version is None:
            esc = name.replace("'", "\\'")
            versions = list(reg.search_model_versions(f"name = '{esc}'", max_results=10_000))
        else:
            versions = [reg.get_model_version(name, version)]
        for mv in versions:
            held.append(Target("stage", str(mv.current_stage)))
            held += [Target("tag", str(k)) for k in (mv.tags or {})]
        return sorted({t for t in held if self.rule_for(t) is not None})

    def _stage_holders(self, name: str, target: Target) -> list[Target]:
        reg = registry_store()
        latest = reg.get_latest_versions(name, stages=[target.name])
        return [target] if latest else []

    # -- registration -------------------------------------------------------------------

    def _register(self, p: dict[str, Any], name: str) -> Decision:
        from mlflow_guard.plugins.gate import bind_copy, check_registration
        from mlflow_guard.registry.artifacts import local_copy
        from mlflow_guard.server.hardening import copy_source

        source = _str(p, "source")
        try:
            with local_copy(source) as path:
                result = check_registration(path, self.policy, self.trust)
            copied = copy_source(source)
            if copied is not None:  # the copied bytes must be the ones the source registered
                source_tags = registry_store().get_model_version(*copied).tags or {}
                result = bind_copy(result, source, dict(source_tags))
        except GuardError as e:
            return Decision.deny("registration", f"source: {e.summary}", e.hint)
        except Exception as e:  # the store could not produce the bytes (missing, undecryptable)
            msg = (getattr(e, "message", None) or str(e)).strip().splitlines()
            return Decision.deny(
                "registration",
                "source: the server could not read the model's artifacts: " + " ".join(msg)[:500],
                "check that the artifacts exist and are intact (an encrypted artifact that fails "
                "authentication was modified in the store)",
            )
        if not result.allowed:
            return Decision.deny(
                "registration",
                f"model version of {name} refused by the registration gate: "
                + " | ".join(result.reasons),
                *result.reasons,
            )
        tags = p.get("tags")
        if not isinstance(tags, list):
            tags = []
        tags = [
            t
            for t in tags
            if not (isinstance(t, dict) and str(t.get("key", "")).startswith("mlflow_guard."))
        ]
        tags += [{"key": k, "value": v} for k, v in sorted(result.tags.items())]
        p["tags"] = tags
        return Decision.allow("registration", *(f"{k}={v}" for k, v in sorted(result.tags.items())))
