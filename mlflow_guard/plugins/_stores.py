# mypy: disable-error-code="no-untyped-call"
"""Guarded SQLAlchemy store subclasses (imported lazily by :mod:`mlflow_guard.plugins.store`).

Subclasses, not wrappers: MLflow checks ``isinstance(store, SqlAlchemyStore)`` in several places.
The registry store runs the registration gate before creating a model version and records the
outcome in ``mlflow_guard.*`` version tags, which callers may not write themselves.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as _RegistryStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as _TrackingStore

from mlflow_guard.core.approvals import Target
from mlflow_guard.core.errors import GuardError
from mlflow_guard.plugins import gate, promotion

_watches: dict[Path, Any] = {}
_watches_lock = threading.Lock()


def _current_policy() -> tuple[Any, Any]:
    """The policy in force (``$MLFLOW_GUARD_POLICY`` or ``./guard.yaml``) and its trust store.

    Loaded once per file and reloaded when the file or a key file it names changes (the guard
    server's :class:`~mlflow_guard.server.policy_watch.PolicyWatch`), instead of several times
    per registry call. A policy that changed and no longer loads raises until it loads again.

    Raises:
        PolicyError: no policy, or one that does not load.
    """
    from mlflow_guard.core.policy import find_policy, load_policy
    from mlflow_guard.server.policy_watch import PolicyWatch

    path = find_policy().resolve()
    with _watches_lock:
        watch = _watches.get(path)
        if watch is None:
            watch = _watches[path] = PolicyWatch(load_policy(path), path)
    policy = watch.refresh()
    return policy, watch.trust_for(policy)


def _deny(summary: str, reasons: list[str]) -> MlflowException:
    lines = "\n".join(f"  - {r}" for r in reasons)
    return MlflowException(f"mlflow-guard: {summary}:\n{lines}", error_code=PERMISSION_DENIED)


def _refuse_guard_tags(tags: Any) -> None:
    for t in tags or []:
        key = t.key if hasattr(t, "key") else str(t)
        if key.strip().lower().startswith(gate.TAG_PREFIX):  # as the server: any case
            raise _deny(
                "tag refused", [f"{key}: tags under {gate.TAG_PREFIX} are written by guard"]
            )


class GuardTrackingStore(_TrackingStore):
    """MLflow's SQLAlchemy tracking store; ``mlflow_guard.*`` run tags are guard's alone."""

    def set_tag(self, run_id: str, tag: Any) -> None:
        """Refuse ``mlflow_guard.*`` tags from callers."""
        _refuse_guard_tags([tag])
        super().set_tag(run_id, tag)

    def log_batch(self, run_id: str, metrics: Any, params: Any, tags: Any) -> None:
        """Refuse ``mlflow_guard.*`` tags from callers."""
        _refuse_guard_tags(tags)
        super().log_batch(run_id, metrics, params, tags)

    def create_run(
        self, experiment_id: str, user_id: str, start_time: int, tags: Any, run_name: str
    ) -> Any:
        """Refuse ``mlflow_guard.*`` tags from callers."""
        _refuse_guard_tags(tags)
        return super().create_run(experiment_id, user_id, start_time, tags, run_name)

    def create_logged_model(self, *args: Any, **kwargs: Any) -> Any:
        """Refuse ``mlflow_guard.*`` tags from callers."""
        _refuse_guard_tags(kwargs.get("tags") if "tags" in kwargs else (args[3:4] or [None])[0])
        return super().create_logged_model(*args, **kwargs)

    def set_logged_model_tags(self, model_id: str, tags: Any) -> None:
        """Refuse ``mlflow_guard.*`` tags from callers."""
        _refuse_guard_tags(tags)
        super().set_logged_model_tags(model_id, tags)


class GuardRegistryStore(_RegistryStore):
    """MLflow's SQLAlchemy registry store with the registration gate of the policy."""

    def create_model_version(self, name: str, source: str, *args: Any, **kwargs: Any) -> Any:
        """Run the gate on the source artifacts, then create the version and tag it.

        A copy (``copy_model_version``: source ``models:/NAME/VERSION``) carries the source
        version's tags; its ``mlflow_guard.*`` tags are dropped when each equals the source's
        (refused otherwise), and the gate verifies the artifacts again.
        """
        from mlflow_guard.server.hardening import copy_source

        tags = kwargs.get("tags") if "tags" in kwargs else (args[1] if len(args) > 1 else None)
        copied = copy_source(source)
        source_tags = (
            dict(super().get_model_version(*copied).tags or {}) if copied is not None else {}
        )
        tags = self._drop_copied_guard_tags(source_tags, tags)
        if "tags" in kwargs:
            kwargs["tags"] = tags
        elif len(args) > 1:
            args = (args[0], tags, *args[2:])
        _refuse_guard_tags(tags)
        self._refuse_protected_tags(name, tags, "version")
        result = self._gate(source)
        if copied is not None:
            result = gate.bind_copy(result, source, source_tags)
        if not result.allowed:
            raise _deny(f"registration of a version of '{name}' denied", result.reasons)
        mv = super().create_model_version(name, source, *args, **kwargs)
        from mlflow.entities.model_registry import ModelVersionTag

        for k, v in result.tags.items():
            super().set_model_version_tag(name, mv.version, ModelVersionTag(k, v))
        return self.get_model_version(name, mv.version)

    @staticmethod
    def _drop_copied_guard_tags(source_tags: dict[str, str], tags: Any) -> Any:
        """Tags without the ``mlflow_guard.*`` ones a copy repeats from its source version's
        ``source_tags`` (refused when a value differs from the source's: forged)."""
        from mlflow_guard.server.hardening import split_copied_guard_tags

        if not source_tags or not tags:
            return tags
        kept, forged = split_copied_guard_tags(
            list(tags),
            lambda t: (str(getattr(t, "key", t)), getattr(t, "value", None)),
            source_tags,
        )
        _refuse_guard_tags(forged)
        return kept

    def create_registered_model(
        self, name: str, tags: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        """Refuse ``mlflow_guard.*`` tags and protected tag keys at creation."""
        _refuse_guard_tags(tags)
        self._refuse_protected_tags(name, tags, "registered model")
        return super().create_registered_model(name, tags, *args, **kwargs)

    def _refuse_protected_tags(self, name: str, tags: Any, what: str) -> None:
        """A protected tag is only ever set by a promotion, never carried in by a creation
        (a copy of a promoted version included)."""
        from mlflow_guard.core.approvals import protected_rule

        targets = [Target("tag", str(getattr(t, "key", t))) for t in tags or []]
        if not targets:
            return
        policy, _ = self._policy_trust()
        hit = [t for t in targets if protected_rule(policy.registry.protected, t)]
        if hit:
            raise _deny(
                f"refused to create a {what} of '{name}' carrying protected "
                f"{', '.join(map(str, hit))}",
                [
                    "request a promotion instead: create it without the tag, then set the tag "
                    "with enough signed approvals (`mlflow-guard approve ... --out FILE`)"
                ],
            )

    def set_model_version_tag(self, name: str, version: str, tag: Any) -> None:
        """Refuse ``mlflow_guard.*`` tags; a protected tag key needs the promotion gate."""
        _refuse_guard_tags([tag])
        self._promote(name, version, Target("tag", str(tag.key)))
        super().set_model_version_tag(name, version, tag)

    def set_registered_model_tag(self, name: str, tag: Any) -> None:
        """Refuse ``mlflow_guard.*`` tags from callers, and protected tag keys on the model."""
        _refuse_guard_tags([tag])
        self._refuse_protected(name, [Target("tag", str(tag.key))], "set")
        super().set_registered_model_tag(name, tag)

    # -- promotion (protected aliases, stages and tags) ----------------------------------

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        """A protected alias needs re-verified artifacts, metric gates and signed approvals."""
        self._promote(name, version, Target("alias", alias))
        super().set_registered_model_alias(name, alias, version)

    def transition_model_version_stage(
        self, name: str, version: str, stage: str, archive_existing_versions: bool
    ) -> Any:
        """A protected stage needs the promotion gate; leaving or archiving one is refused."""
        self._promote(name, version, promotion.stage_target(stage))
        leaving = [t for t in self._held(name, version) if t.kind == "stage"]
        if archive_existing_versions:
            leaving += [t for t in self._held(name) if t == promotion.stage_target(stage)]
        self._refuse_protected(name, leaving, "move out of")
        return super().transition_model_version_stage(
            name, version, stage, archive_existing_versions
        )

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        """Deleting a protected alias is refused in embedded mode."""
        self._refuse_protected(name, [Target("alias", alias)], "delete")
        super().delete_registered_model_alias(name, alias)

    def delete_model_version_tag(self, name: str, version: str, key: str) -> None:
        """Deleting a protected tag is refused in embedded mode."""
        self._refuse_protected(name, [Target("tag", key)], "delete")
        super().delete_model_version_tag(name, version, key)

    def delete_model_version(self, name: str, version: str) -> None:
        """A version holding a protected target cannot be deleted."""
        self._refuse_protected(name, self._held(name, version), "delete the holder of")
        super().delete_model_version(name, version)

    def rename_registered_model(self, name: str, new_name: str) -> Any:
        """A model holding a protected target cannot be renamed."""
        self._refuse_protected(name, self._held(name), "rename the holder of")
        return super().rename_registered_model(name, new_name)

    def delete_registered_model(self, name: str) -> None:
        """A model holding a protected target cannot be deleted."""
        self._refuse_protected(name, self._held(name), "delete the holder of")
        super().delete_registered_model(name)

    def _policy_trust(self) -> tuple[Any, Any]:
        try:
            return _current_policy()
        except GuardError as e:
            raise _deny("no usable policy for the registry", [f"{e.summary}; {e.hint}"]) from e

    def _promote(self, name: str, version: str, target: Any) -> None:
        policy, trust = self._policy_trust()
        promotion.check(self, policy, trust, name, str(version), target, _deny)

    def _held(self, name: str, version: str | None = None) -> list[Any]:
        policy, _ = self._policy_trust()
        return promotion.holders(self, policy, name, version)

    def _refuse_protected(self, name: str, targets: list[Any], verb: str) -> None:
        from mlflow_guard.core.approvals import protected_rule

        policy, _ = self._policy_trust()
        hit = [t for t in targets if protected_rule(policy.registry.protected, t)]
        if hit:
            raise _deny(
                f"refused to {verb} protected {', '.join(map(str, hit))} of '{name}'",
                [
                    "embedded mode cannot authenticate an admin: make this change through the "
                    "guard server, or remove the protection from the policy on purpose"
                ],
            )

    def _gate(self, source: str) -> gate.GateResult:
        from mlflow_guard.loading import download

        try:
            policy, trust = _current_policy()
        except GuardError as e:
            return gate.GateResult(False, [f"policy: {e.summary}; {e.hint}"])
        tmp = tempfile.mkdtemp(prefix="mlflow-guard-gate-")
        try:
            try:
                local = download(source, Path(tmp))
            except Exception as e:  # an unreadable source is a denial, not a crash
                return gate.GateResult(False, [f"source: cannot read {source}: {e}"])
            return gate.check_registration(local, policy, trust)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
