"""SLSA Provenance v1 for models: an in-toto Statement v1, signed in DSSE when a key is given.

The statement's single subject is the model: its name and the OMS root digest of the model
directory computed **without** ``model.sig`` and without the provenance file itself (the OMS
signature then covers the provenance file, so both are bound to the same bytes). The predicate
follows https://slsa.dev/provenance/v1:

- ``buildDefinition.externalParameters``: git repository (credentials stripped), commit,
  branch, dirty flag and diff digest, entry point;
- ``buildDefinition.internalParameters.mlflow``: run id, experiment id, model id, user;
- ``buildDefinition.resolvedDependencies``: the git source, every dataset (sha256 from its
  signed manifest when known, DVC md5 as a lookup key), base models (signed root digest and
  signer key id) and the environment (digest plus the distribution list);
- ``runDetails``: builder id, invocation id (the MLflow run id), start and finish times.

Pure module: no MLflow, DVC or git import. The policy's lineage requirements are evaluated here
(:func:`unmet_requirements`) so the server and the embedded store decide identically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow_guard.core import dsse, hashing, intoto, keys
from mlflow_guard.core.errors import KeyNotTrusted, SignatureInvalid
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://mlflow-guard.dev/mlflow-run/v1"
BUILDER_ID = "https://mlflow-guard.dev/client/v1"
PROVENANCE_FILE = "guard.provenance.json"
EXCLUDED = ("model.sig", PROVENANCE_FILE)


@dataclass(frozen=True)
class Dataset:
    """A dataset the run consumed (a DVC output)."""

    path: str
    md5: str = ""
    hash_kind: str = ""
    sha256: str = ""
    file_sha256: str = ""
    signature: str = ""


@dataclass(frozen=True)
class BaseModelRef:
    """A base model the run started from, as verified when it was loaded."""

    uri: str
    root_digest: str
    signer_key_id: str
    signer: str = ""


@dataclass(frozen=True)
class RunInfo:
    """The MLflow run (and logged model) that produced the model."""

    run_id: str = ""
    experiment_id: str = ""
    model_id: str = ""
    user: str = ""
    started_on: datetime | None = None
    finished_on: datetime | None = None


@dataclass(frozen=True)
class Source:
    """The code the run was started from."""

    repository: str = ""
    commit: str = ""
    branch: str = ""
    dirty: bool | None = None
    diff_sha256: str = ""
    entry_point: str = ""


@dataclass(frozen=True)
class ProvenanceInput:
    """Everything :func:`build_statement` records."""

    model_name: str
    root_digest: str
    source: Source = field(default_factory=Source)
    run: RunInfo = field(default_factory=RunInfo)
    datasets: tuple[Dataset, ...] = ()
    base_models: tuple[BaseModelRef, ...] = ()
    environment_sha256: str = ""
    environment: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def _ts(t: datetime | None) -> str | None:
    if t is None:
        return None
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "", [], {})}


def build_statement(p: ProvenanceInput) -> intoto.Statement:
    """Build the in-toto Statement with the SLSA Provenance v1 predicate."""
    deps: list[dict[str, Any]] = []
    s = p.source
    if s.commit:
        deps.append(
            _drop_empty(
                {
                    "name": "source",
                    "uri": f"git+{s.repository}" if s.repository else "",
                    "digest": {"gitCommit": s.commit},
                    "annotations": {"kind": "source"},
                }
            )
        )
    for d in p.datasets:
        digest = _drop_empty({"sha256": d.sha256, "md5": d.md5})
        deps.append(
            _drop_empty(
                {
                    "name": d.path,
                    "uri": f"dvc:{d.path}",
                    "digest": digest or {"md5": "unknown"},
                    "annotations": _drop_empty(
                        {
                            "kind": "dataset",
                            "hash_kind": d.hash_kind,
                            "signature": d.signature,
                            "file_sha256": d.file_sha256,
                            "signed": bool(d.sha256 and d.signature),
                        }
                    ),
                }
            )
        )
    for b in p.base_models:
        deps.append(
            {
                "name": b.uri,
                "uri": b.uri,
                "digest": {"sha256": b.root_digest},
                "annotations": _drop_empty(
                    {"kind": "base_model", "signer_key_id": b.signer_key_id, "signer": b.signer}
                ),
            }
        )
    if p.environment_sha256:
        deps.append(
            {
                "name": "environment",
                "digest": {"sha256": p.environment_sha256},
                "annotations": {"kind": "environment", **dict(p.environment)},
            }
        )
    r = p.run
    predicate: dict[str, Any] = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": _drop_empty(
                {
                    "repository": s.repository,
                    "commit": s.commit,
                    "branch": s.branch,
                    "dirty": s.dirty,
                    "diffSha256": s.diff_sha256,
                    "entryPoint": s.entry_point,
                }
            ),
            "internalParameters": {
                "mlflow": _drop_empty(
                    {
                        "runId": r.run_id,
                        "experimentId": r.experiment_id,
                        "modelId": r.model_id,
                        "user": r.user,
                    }
                ),
                "lineageProblems": list(p.problems),
            },
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID},
            "metadata": _drop_empty(
                {
                    "invocationId": r.run_id,
                    "startedOn": _ts(r.started_on),
                    "finishedOn": _ts(r.finished_on),
                }
            ),
        },
    }
    return intoto.Statement(
        subject=[intoto.Subject(name=p.model_name, digest={"sha256": p.root_digest})],
        predicate_type=PREDICATE_TYPE,
        predicate=predicate,
    )


def sign(statement: intoto.Statement, signer: keys.Signer) -> bytes:
    """The statement signed in a DSSE envelope, as the JSON bytes written to the model dir."""
    return json.dumps(intoto.sign_statement(statement, signer).to_json(), indent=2).encode()


def unsigned(statement: intoto.Statement) -> bytes:
    """The bare statement, written when no signing key is configured."""
    return statement.to_json_bytes()


def subject_digest(resources: Mapping[str, bytes], method: str = "files") -> str:
    """Root digest of a model's OMS resources without ``model.sig`` and the provenance file."""
    kept = [
        d
        for name, d in resources.items()
        if (name.rsplit(":", 2)[0] if method == "shards" else name) not in EXCLUDED
    ]
    return hashing.root_digest(kept)


@dataclass(frozen=True)
class Attestation:
    """A provenance file read from a model directory."""

    statement: intoto.Statement
    signed_by: TrustedKey | None

    @property
    def predicate(self) -> dict[str, Any]:
        """The SLSA predicate."""
        return self.statement.predicate

    def dependencies(self, kind: str) -> list[dict[str, Any]]:
        """Resolved dependencies annotated with ``kind`` (``dataset``, ``base_model``, ...)."""
        deps = self.predicate.get("buildDefinition", {}).get("resolvedDependencies", [])
        return [
            d
            for d in deps
            if isinstance(d, dict) and (d.get("annotations") or {}).get("kind") == kind
        ]


def read(
    data: bytes,
    *,
    expected_root: str,
    trust: TrustStore | None = None,
    source: str = PROVENANCE_FILE,
) -> Attestation:
    """Parse a provenance file and check that it is about the model with ``expected_root``.

    A DSSE envelope is verified against ``trust`` (purpose ``model``); a bare statement is
    accepted as *unsigned* (``signed_by`` is ``None``). With ``trust`` ``None`` a signed file is
    parsed without checking its signature (for display only).

    Raises:
        SignatureInvalid: not JSON, not a SLSA v1 statement, bad signature, or about another model.
        KeyNotTrusted: signed by a key not trusted for ``model``.
    """
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise SignatureInvalid(
            f"{source} is not valid JSON (corrupt provenance attestation)",
            hint="re-log the model; the provenance is written at log time",
        ) from e
    signer: TrustedKey | None = None
    if isinstance(raw, dict) and "payloadType" in raw:
        env = dsse.parse(raw, source=source)
        if trust is not None:
            payload, signer = dsse.verify(env, trust, Purpose.MODEL)
        else:
            payload = env.payload_bytes()
        st = intoto.parse_statement(payload, expected_predicate_type=PREDICATE_TYPE)
    else:
        st = intoto.parse_statement(data, expected_predicate_type=PREDICATE_TYPE)
    actual = st.subject[0].digest.get("sha256", "")
    if len(st.subject) != 1 or actual != expected_root:
        raise SignatureInvalid(
            f"{source} is an attestation for another model",
            details=[f"expected subject sha256 {expected_root}", f"attestation names {actual}"],
            hint="the provenance was copied from another model; re-log the model",
        )
    return Attestation(st, signer)


def unmet_requirements(
    attestation: Attestation | None,
    requirements: Iterable[str],
    trust: TrustStore | None = None,
    *,
    at: datetime | None = None,
) -> list[str]:
    """Every lineage requirement of the policy that ``attestation`` does not meet (empty: ok).

    Requirements: ``attestation`` (a provenance signed by a trusted model key), ``git_commit``,
    ``git_clean``, ``datasets_signed`` (at least one dataset, each marked signed and with a
    sha256 digest of 64 lower-case hex), ``environment``, ``base_model_signed`` (at least one
    base model, each with a sha256 digest and signed by a key the trust store accepts for
    ``model``). An unknown requirement is unmet (fail closed).
    """
    reqs = list(requirements)
    if not reqs:
        return []
    how = "log the model through MLflow with mlflow-guard installed"
    if attestation is None:
        return [f"{r}: no provenance attestation ({PROVENANCE_FILE}); {how}" for r in reqs]
    ext = attestation.predicate.get("buildDefinition", {}).get("externalParameters", {})
    out: list[str] = []
    for r in reqs:
        if r == "attestation":
            if attestation.signed_by is None:
                out.append(
                    "attestation: the provenance is not signed by a trusted model key; "
                    "set MLFLOW_GUARD_SIGNING_KEY before logging"
                )
        elif r == "git_commit":
            if not ext.get("commit"):
                out.append("git_commit: no git commit recorded; train from a git checkout")
        elif r == "git_clean":
            if not ext.get("commit") or ext.get("dirty") is not False:
                out.append(
                    "git_clean: the run started from a working tree with uncommitted changes "
                    "(or outside git); commit first and re-run"
                )
        elif r == "datasets_signed":
            ds = attestation.dependencies("dataset")
            bad = [
                d.get("name", "?")
                for d in ds
                if not ((d.get("annotations") or {}).get("signed") and _sha256_of(d))
            ]
            if not ds:
                out.append("datasets_signed: no DVC dataset recorded; track inputs with DVC")
            elif bad:
                out.append(
                    "datasets_signed: unsigned datasets: "
                    + ", ".join(sorted(bad))
                    + "; sign them with `dvc-guard sign`"
                )
        elif r == "environment":
            if not attestation.dependencies("environment"):
                out.append("environment: no environment fingerprint recorded")
        elif r == "base_model_signed":
            out.extend(_base_model_problems(attestation, trust, at))
        else:
            out.append(f"{r}: unknown lineage requirement (denied)")
    return out


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _sha256_of(dep: dict[str, Any]) -> str:
    """The dependency's sha256 digest when it is one (64 lower-case hex), else ``""``.

    Dependencies whose only digest is md5 (DVC's lookup key) or another algorithm never count
    as signed: every security digest here is sha256.
    """
    digest = dep.get("digest")
    v = digest.get("sha256") if isinstance(digest, dict) else None
    return v if isinstance(v, str) and _SHA256_HEX.fullmatch(v) else ""


def _base_model_problems(
    attestation: Attestation, trust: TrustStore | None, at: datetime | None
) -> list[str]:
    bases = attestation.dependencies("base_model")
    if not bases:
        return [
            "base_model_signed: no base model recorded; load it with mlflow_guard.load_model "
            "or name it with mlflow_guard.lineage.base_model(uri)"
        ]
    if trust is None:
        return ["base_model_signed: no trust store to check base model signers against"]
    out = []
    for b in bases:
        kid = str((b.get("annotations") or {}).get("signer_key_id", ""))
        if not _sha256_of(b):
            out.append(
                f"base_model_signed: base model {b.get('name')}: its digest is not a sha256 "
                "digest (64 lower-case hex); load it with mlflow_guard.load_model"
            )
            continue
        try:
            if not kid:
                raise KeyNotTrusted("no signer recorded")
            trust.resolve(kid, Purpose.MODEL, at)
        except KeyNotTrusted as e:
            out.append(f"base_model_signed: base model {b.get('name')}: {e.summary}")
    return out
