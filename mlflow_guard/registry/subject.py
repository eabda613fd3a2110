"""What the server establishes about a model version before it may reach a protected target.

Every fact comes from the server's own stores: the root digest is recomputed from the version's
artifacts (:func:`mlflow_guard.core.oms.verify_model` rehashes every file and checks the
signature against the policy's trust store), the run and version creators are the server-written
``mlflow_guard.user`` tags, the signer is the key the verification found, and the metrics are
the source run's latest values. A fact that cannot be established is a *problem*, and any
problem denies the promotion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_guard.core import oms, provenance
from mlflow_guard.core.approvals import PromotionSubject, Target
from mlflow_guard.core.errors import GuardError, ManifestMismatch
from mlflow_guard.core.policy import Policy
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.plugins.gate import ROOT_TAG, TAG_PREFIX
from mlflow_guard.registry.artifacts import local_copy

USER_TAG = TAG_PREFIX + "user"
SIGNER_TAG = TAG_PREFIX + "signer"
SIGNER_KEY_TAG = TAG_PREFIX + "signer_key_id"
SCAN_TAG = TAG_PREFIX + "scan"
LINEAGE_TAG = TAG_PREFIX + "lineage_sha256"


@dataclass
class VersionFacts:
    """The server's view of one version, for decisions and for reviewers.

    Attributes:
        subject: the promotion subject, or ``None`` when the digest could not be established.
        problems: registration gates that no longer hold (each with how to fix it).
        tags: the version's tags (server-written ``mlflow_guard.*`` ones included).
        run_id: the source run, when there is one.
        lineage: lineage tags shown to reviewers (commit, datasets, environment).
    """

    subject: PromotionSubject | None
    problems: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    source: str = ""
    lineage: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON form (signature, scan and lineage status for reviewers)."""
        s = self.subject
        return {
            "root_digest": s.root_digest if s else None,
            "recorded_root_digest": self.tags.get(ROOT_TAG),
            "signer": self.tags.get(SIGNER_TAG),
            "signer_key_id": self.tags.get(SIGNER_KEY_TAG),
            "scan": self.tags.get(SCAN_TAG, "not scanned"),
            "lineage_digest": self.tags.get(LINEAGE_TAG),
            "lineage": self.lineage,
            "run_id": self.run_id,
            "run_creator": s.run_creator if s else None,
            "version_creator": self.tags.get(USER_TAG),
            "metrics": dict(s.metrics) if s else {},
            "problems": list(self.problems),
        }


def _provenance(path: Path) -> dict[str, str]:
    """Commit, datasets and environment from the verified model's provenance (for display).

    Called only after :func:`oms.verify_model` succeeded, so the file is covered by the
    signature and its digest was checked.
    """
    prov = path / provenance.PROVENANCE_FILE
    if not prov.is_file():
        return {}
    try:
        _, _, manifest = oms.parse_bundle((path / oms.SIGNATURE_FILE).read_bytes())
        root = provenance.subject_digest(manifest.resources, manifest.serialization.method)
        att = provenance.read(prov.read_bytes(), expected_root=root, trust=None)
    except GuardError as e:
        return {"provenance": f"unreadable: {e.summary}"}
    ext = att.predicate.get("buildDefinition", {}).get("externalParameters", {})
    out = {k: str(ext[k]) for k in ("repository", "commit", "branch", "dirty") if k in ext}
    datasets = []
    for d in att.dependencies("dataset"):
        signed = (d.get("annotations") or {}).get("signed")
        datasets.append(f"{d.get('name')} ({'signed' if signed else 'unsigned'})")
    if datasets:
        out["datasets"] = ", ".join(datasets)
    for env in att.dependencies("environment"):
        out["environment"] = "sha256:" + str((env.get("digest") or {}).get("sha256", ""))[:16]
    return out


def _stores() -> tuple[Any, Any]:
    from mlflow.server.handlers import _get_model_registry_store, _get_tracking_store

    return _get_model_registry_store(), _get_tracking_store()


def establish(
    policy: Policy, trust: TrustStore, model: str, version: str, target: Target
) -> VersionFacts:
    """Recompute and collect the facts about ``model`` version ``version`` (never raises
    :class:`GuardError`: failures become problems)."""
    registry, tracking = _stores()
    mv = registry.get_model_version(model, str(version))
    tags = {str(k): str(v) for k, v in (mv.tags or {}).items()}
    facts = VersionFacts(None, tags=tags, run_id=mv.run_id or None, source=str(mv.source))
    recorded = tags.get(ROOT_TAG)
    if not recorded:
        facts.problems.append(
            "registration: the version has no server-recorded root digest (it was not registered "
            "through the guard's registration gate); register it again from signed artifacts"
        )
    digest, signers = None, frozenset[str]()
    try:
        with local_copy(mv.source) as path:
            result = oms.verify_model(path, trust)
            facts.lineage.update(_provenance(path))
        digest = result.root_digest
        signers = frozenset({result.key.name, result.key.key_id})
    except ManifestMismatch as e:
        changed = [
            *e.changed,
            *(f"added {x}" for x in e.extra),
            *(f"removed {x}" for x in e.missing),
        ]
        facts.problems.append(
            "registration: the artifacts changed since they were signed and registered ("
            + ", ".join(changed[:10])
            + "); register a new, re-signed version"
        )
    except GuardError as e:
        facts.problems.append(
            f"registration: the signature no longer verifies: {e.summary}"
            + (f"; {e.hint}" if e.hint else "")
        )
    if digest and recorded and digest != recorded:
        facts.problems.append(
            f"registration: the artifacts now hash to {digest[:16]}…, not the digest recorded at "
            f"registration ({recorded[:16]}…); register a new, re-signed version"
        )
    run_creator, metrics = None, {}
    if mv.run_id:
        run = tracking.get_run(mv.run_id)
        run_creator = run.data.tags.get(USER_TAG)
        metrics = {str(k): float(v) for k, v in run.data.metrics.items()}
        facts.lineage |= {
            k.removeprefix("mlflow."): str(v)
            for k, v in run.data.tags.items()
            if k in ("mlflow.source.git.commit", "mlflow.source.name", "mlflow.source.git.repoURL")
            or k.startswith(TAG_PREFIX + "lineage")
        }
    if digest:
        facts.subject = PromotionSubject(
            model=model,
            version=str(version),
            target=target,
            root_digest=digest,
            run_creator=run_creator,
            version_creator=tags.get(USER_TAG),
            signer_identities=signers,
            metrics=metrics,
        )
    return facts
