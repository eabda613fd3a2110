"""Registration gate over a local copy of a model directory (used by the embedded guarded store).

Per the policy's ``registry`` section: a valid OMS ``model.sig`` by a key trusted for ``model``
(every file rehashed), a model-file scan with no finding, and the lineage requirements checked
against the provenance attestation (whose subject must be this model). Every unmet requirement
is reported, each with how to meet it. No MLflow import: the caller downloads the artifacts.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlflow_guard.core import oms, provenance
from mlflow_guard.core.errors import GuardError, SignatureInvalid
from mlflow_guard.core.policy import Policy
from mlflow_guard.core.trust import TrustStore

TAG_PREFIX = "mlflow_guard."
ROOT_TAG = TAG_PREFIX + "root_sha256"
SIGN_HINT = (
    "configure a signing key before logging: export MLFLOW_GUARD_SIGNING_KEY=path/to/model.key "
    "(and MLFLOW_GUARD_SIGNING_KEY_PASSPHRASE if it is encrypted), a key whose public half is "
    "listed in the policy with purpose 'model'; or sign the model with `mlflow-guard sign`"
)


@dataclass
class GateResult:
    """Outcome of the registration gate: allowed, the unmet requirements, tags to record."""

    allowed: bool
    reasons: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


def check_registration(model_dir: Path, policy: Policy, trust: TrustStore) -> GateResult:
    """Decide whether the model in ``model_dir`` may be registered. Never raises GuardError."""
    reg = policy.registry
    reasons: list[str] = []
    tags: dict[str, str] = {}
    resources: dict[str, bytes] | None = None
    method = "files"
    try:
        result = oms.verify_model(model_dir, trust)
        tags[TAG_PREFIX + "signer"] = result.key.name
        tags[TAG_PREFIX + "signer_key_id"] = result.key.key_id
        tags[ROOT_TAG] = result.root_digest
        _, _, manifest = oms.parse_bundle((model_dir / oms.SIGNATURE_FILE).read_bytes())
        resources, method = manifest.resources, manifest.serialization.method
    except SignatureInvalid as e:
        if reg.require_signature:
            unsigned = not (model_dir / oms.SIGNATURE_FILE).exists()
            reasons.append(
                (
                    "signature: the model is unsigned (no model.sig)"
                    if unsigned
                    else f"signature: {e.summary}"
                )
                + f"; {SIGN_HINT}"
            )
    except GuardError as e:
        if reg.require_signature:
            reasons.append(f"signature: {e.summary}; {e.hint or SIGN_HINT}")
    if reg.scan_model_files:
        from mlflow_guard.scanning import scan_model

        report = scan_model(model_dir, policy)
        tags[TAG_PREFIX + "scan"] = "clean" if report.safe else "unsafe"
        if not report.safe:
            reasons.extend(f"scan: {f.path}: {f.reason}" for f in report.findings[:20])
    if reg.require_lineage:
        attestation = None
        prov_path = model_dir / provenance.PROVENANCE_FILE
        if resources is None:
            reasons.append("lineage: cannot check the provenance of an unverified model")
        elif prov_path.is_file():
            try:
                attestation = provenance.read(
                    prov_path.read_bytes(),
                    expected_root=provenance.subject_digest(resources, method),
                    trust=trust,
                )
                tags[TAG_PREFIX + "lineage_sha256"] = provenance.subject_digest(resources, method)
            except GuardError as e:
                reasons.append(f"lineage: {e.summary}")
        if resources is not None:
            reasons.extend(
                f"lineage: {r}"
                for r in provenance.unmet_requirements(attestation, reg.require_lineage, trust)
            )
    return GateResult(not reasons, reasons, tags)


def bind_copy(result: GateResult, source: str, source_tags: Mapping[str, str]) -> GateResult:
    """The gate's result for a copy (``copy_model_version``) of the version ``source`` names.

    A signature proves who signed the files, not which version they are: the copied artifacts
    must also have the root digest the registry recorded when the source version was
    registered (``mlflow_guard.root_sha256``). Otherwise another validly signed model copied
    over the source's artifacts would be registered as a copy of it. A source registered
    without guard (no recorded digest) is checked by its signature alone, as loading does.
    """
    recorded = source_tags.get(ROOT_TAG)
    if not result.allowed or recorded is None:
        return result
    got = result.tags.get(ROOT_TAG, "")
    if hmac.compare_digest(recorded.encode(), got.encode()):
        return result
    why = (
        f"copy: the artifacts of {source} (root sha256 {got[:16] or 'unknown'}…) are not the "
        f"ones that version was registered with (root sha256 {recorded[:16]}…); its files were "
        "replaced after registration: restore them, or register the intended model as a new "
        "version instead of copying this one"
    )
    return GateResult(False, [*result.reasons, why], result.tags)
