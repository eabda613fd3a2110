"""Promotion gate of the embedded guarded registry store (``guard+sqlite://``, no server).

One person on a laptop gets the same promotion rules as the server, with *signed* approvals
only (there is no login to authenticate anyone): setting a protected alias, stage or tag needs
the version's artifacts to re-verify now (digest equal to the one recorded at registration),
the metric gates on the source run, and enough signed approvals
(``mlflow-guard approve … --out FILE``) found as ``*.json`` files in the approvals folder
(``$MLFLOW_GUARD_APPROVALS_DIR``, default ``./approvals``). Removing a protected target, or
deleting/renaming what holds one, is refused here: do it through the guard server or after
removing the protection from the policy on purpose.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow_guard.core import approvals, oms
from mlflow_guard.core.approvals import Approval, PromotionSubject, Target
from mlflow_guard.core.errors import GuardError, ManifestMismatch
from mlflow_guard.core.policy import Policy
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.plugins.gate import ROOT_TAG

APPROVALS_ENV = "MLFLOW_GUARD_APPROVALS_DIR"
STAGES = {"staging": "Staging", "production": "Production", "archived": "Archived"}

Deny = Callable[[str, list[str]], Exception]


def stage_target(stage: str) -> Target:
    """The target of a stage transition (MLflow accepts stage names in any case)."""
    return Target("stage", STAGES.get(stage.lower(), stage))


def approvals_dir() -> Path:
    """Where signed approval files are read from."""
    return Path(os.environ.get(APPROVALS_ENV) or "approvals")


def load_signed(folder: Path, trust: TrustStore) -> tuple[list[Approval], list[str]]:
    """Verify every ``*.json`` in ``folder``; return the valid approvals and why others failed."""
    found: list[Approval] = []
    problems: list[str] = []
    if not folder.is_dir():
        return found, problems
    for f in sorted(folder.glob("*.json")):
        try:
            found.append(approvals.verify_signed(f.read_bytes(), trust))
        except GuardError as e:
            problems.append(f"{f.name} does not count: {e.summary}")
        except OSError as e:
            problems.append(f"{f.name} is unreadable: {e.strerror or e}")
    return found, problems


def check(
    registry: Any,
    policy: Policy,
    trust: TrustStore,
    name: str,
    version: str,
    target: Target,
    deny: Deny,
) -> None:
    """Raise ``deny(summary, reasons)`` unless ``name`` version ``version`` may get ``target``."""
    rule = approvals.protected_rule(policy.registry.protected, target)
    if rule is None:
        return
    summary = f"{target} for {name} version {version} refused"
    mv = registry.get_model_version(name, str(version))
    recorded = (mv.tags or {}).get(ROOT_TAG)
    if not recorded:
        why = "the version has no recorded root digest: it was not registered through the gate"
        raise deny(summary, [why + "; register it again"])
    from mlflow_guard.loading import download

    tmp = Path(tempfile.mkdtemp(prefix="mlflow-guard-promote-"))
    try:
        try:
            result = oms.verify_model(download(str(mv.source), tmp / "model"), trust)
        except ManifestMismatch as e:
            raise deny(summary, [f"the artifacts changed since registration: {d}"
                                 for d in e.details]) from e  # fmt: skip
        except GuardError as e:
            raise deny(summary, [f"the signature no longer verifies: {e.summary}"]) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if result.root_digest != recorded:
        raise deny(summary, [f"the artifacts hash to {result.root_digest[:16]}…, not the digest "
                             f"recorded at registration ({recorded[:16]}…)"])  # fmt: skip
    run_creator, metrics = None, {}
    if mv.run_id:
        import mlflow

        run = mlflow.MlflowClient().get_run(mv.run_id)
        run_creator = run.info.user_id or None
        metrics = {str(k): float(v) for k, v in run.data.metrics.items()}
    subject = PromotionSubject(
        model=name,
        version=str(version),
        target=target,
        root_digest=result.root_digest,
        run_creator=run_creator,
        version_creator=getattr(mv, "user_id", None) or None,
        signer_identities=frozenset({result.key.name, result.key.key_id}),
        metrics=metrics,
    )
    found, problems = load_signed(approvals_dir(), trust)
    status = approvals.evaluate(subject, rule, found, policy.roles)
    if not status.decision.allowed:
        ignored = [f"approval by {a.approver} ignored: {why}" for a, why in status.ignored]
        raise deny(summary, [*status.decision.reasons, *ignored, *problems])


def holders(registry: Any, policy: Policy, name: str, version: str | None = None) -> list[Target]:
    """Protected targets that ``name`` (or one version of it) currently holds."""
    held: list[Target] = []
    rm = registry.get_registered_model(name)
    for alias, v in (getattr(rm, "aliases", None) or {}).items():
        t = Target("alias", alias)
        if (version is None or str(v) == str(version)) and approvals.protected_rule(
            policy.registry.protected, t
        ):
            held.append(t)
    for mv in registry.search_model_versions(f"name='{name}'"):
        if version is not None and str(mv.version) != str(version):
            continue
        t = stage_target(mv.current_stage or "None")
        if approvals.protected_rule(policy.registry.protected, t):
            held.append(t)
        for key in mv.tags or {}:
            tt = Target("tag", key)
            if approvals.protected_rule(policy.registry.protected, tt):
                held.append(tt)
    return held
