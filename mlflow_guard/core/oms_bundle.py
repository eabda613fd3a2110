"""OMS v1.0 wire format: the Sigstore bundle, its DSSE envelope and the OMS in-toto Statement.

Pure parsing and building, no file system and no trust decisions (see :mod:`mlflow_guard.core.oms`
for signing and verifying model directories). The bundle is
``application/vnd.dev.sigstore.bundle.v0.3+json`` with a ``dsseEnvelope`` over an in-toto
Statement v1 of predicate type ``https://model_signing/signature/v1.0``; the single subject's
sha256 digest is the root digest (sha256 over the resource digests in manifest order).
Key-based bundles carry ``verificationMaterial.publicKey.hint`` (hex sha256 of the signer's
public key PEM), as ``model_signing`` writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlflow_guard.core import dsse, hashing, keys
from mlflow_guard.core.errors import SignatureInvalid
from mlflow_guard.core.hashing import Serialization

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
SIGNATURE_FILE = "model.sig"
_DIGEST_HEX = r"^[0-9a-f]{64}$"  # sha256 and blake3: 32 bytes
_MATERIAL = ("publicKey", "x509CertificateChain", "certificate")  # Sigstore's oneof content


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _PublicKeyId(_Strict):
    hint: str = ""


class _VerificationMaterial(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    public_key: _PublicKeyId | None = Field(default=None, alias="publicKey")
    tlog_entries: list[Any] = Field(alias="tlogEntries")


class _BundleSignature(_Strict):
    sig: str = Field(min_length=1)
    keyid: str | None = None


class _BundleEnvelope(_Strict):
    payload: str = Field(min_length=1)
    payload_type: Literal["application/vnd.in-toto+json"] = Field(alias="payloadType")
    signatures: list[_BundleSignature] = Field(min_length=1)


class _Bundle(_Strict):
    media_type: str = Field(alias="mediaType", pattern=r"^application/vnd\.dev\.sigstore\.bundle")
    verification_material: _VerificationMaterial = Field(alias="verificationMaterial")
    dsse_envelope: _BundleEnvelope = Field(alias="dsseEnvelope")


class _Resource(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    digest: str = Field(pattern=_DIGEST_HEX)
    algorithm: str = Field(pattern=r"^(sha256|blake3)(-sharded-[1-9][0-9]*)?$")


class _Serialization(BaseModel):
    model_config = ConfigDict(extra="allow")

    method: Literal["files", "shards"]
    hash_type: Literal["sha256", "blake3"]
    allow_symlinks: bool
    ignore_paths: list[str] = Field(default_factory=list)
    shard_size: int | None = Field(default=None, gt=0)


class _Predicate(_Strict):
    resources: list[_Resource]
    serialization: _Serialization


class _Subject(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    digest: dict[str, str]


class _Statement(_Strict):
    type_: Literal["https://in-toto.io/Statement/v1"] = Field(alias="_type")
    subject: list[_Subject]
    predicate_type: str = Field(alias="predicateType")
    predicate: dict[str, Any]


@dataclass(frozen=True)
class SignedManifest:
    """What a valid OMS bundle says: model name, root digest, serialization and resources."""

    model_name: str
    root_digest: str
    serialization: Serialization
    resources: dict[str, bytes]
    key_hint: str


def _errors(e: ValidationError) -> list[str]:
    return [f"{'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors()]


def resource_algorithm(serialization: Serialization) -> str:
    """The ``algorithm`` of each resource, as ``model_signing`` 1.1 writes and compares it.

    ``files``: the hash name (``sha256``). ``shards``: ``<hash>-sharded-<shard_size>``: the
    reference verifier compares this name too, so a shard manifest naming plain ``sha256``
    would not verify there (the OMS v1.0 schema's enum lists only the plain names).
    """
    if serialization.method == "shards":
        return f"{serialization.hash_type}-sharded-{serialization.shard_size}"
    return serialization.hash_type


def build_bundle(
    resources: dict[str, bytes], serialization: Serialization, model_name: str, signer: keys.Signer
) -> dict[str, Any]:
    """Build an OMS bundle (as a JSON-ready dict) over already-hashed resources.

    ``resources`` must be in manifest order (as :func:`hashing.hash_entries` returns them).
    """
    root = hashing.root_digest(resources.values())
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": model_name, "digest": {"sha256": root}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": serialization.to_predicate(),
            "resources": [
                {"name": n, "algorithm": resource_algorithm(serialization), "digest": d.hex()}
                for n, d in resources.items()
            ],
        },
    }
    payload = json.dumps(statement, indent=2).encode("utf-8")
    env = dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, signer, keyid="")
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": keys.oms_hint(signer.public_key)},
            "tlogEntries": [],
        },
        "dsseEnvelope": env.to_json(),
    }


def parse_bundle(
    data: bytes, *, source: str = SIGNATURE_FILE
) -> tuple[_Bundle, bytes, SignedManifest]:
    """Parse an OMS bundle and its statement; check structure and root-digest consistency.

    Does **not** check the signature; :func:`verify_bundle` does.

    Raises:
        SignatureInvalid: not JSON, not a Sigstore bundle, not an OMS statement, inconsistent.
    """
    if not data.strip():
        raise SignatureInvalid(f"{source} is empty", hint="re-sign with `mlflow-guard sign`")
    try:
        raw = dsse.loads_strict(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise SignatureInvalid(
            f"{source} is not valid JSON (truncated or not a signature file?)",
            details=[str(e)],
            hint="re-sign with `mlflow-guard sign`",
        ) from e
    try:
        bundle = _Bundle.model_validate(raw)
    except ValidationError as e:
        raise SignatureInvalid(
            f"{source} is not a Sigstore bundle v0.3 with a DSSE envelope",
            details=_errors(e),
            hint="re-sign with `mlflow-guard sign` or `model_signing sign key`",
        ) from e
    if bundle.media_type != BUNDLE_MEDIA_TYPE:
        raise SignatureInvalid(
            f"{source}: unsupported bundle mediaType {bundle.media_type!r}",
            details=[f"expected {BUNDLE_MEDIA_TYPE!r}"],
        )
    material = [k for k in _MATERIAL if k in raw["verificationMaterial"]]
    if len(material) > 1:  # a oneof in Sigstore's bundle: two verifiers could pick two signers
        raise SignatureInvalid(
            f"{source}: verificationMaterial holds {', '.join(material)}, not exactly one",
            hint="a bundle names one public key or one certificate; re-sign with "
            "`mlflow-guard sign`",
        )
    payload = dsse.b64decode(bundle.dsse_envelope.payload, f"{source}: DSSE payload")
    try:
        statement = dsse.loads_strict(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise SignatureInvalid(
            f"{source}: signed payload is not valid JSON", details=[str(e)]
        ) from e
    try:
        st = _Statement.model_validate(statement)
    except ValidationError as e:
        raise SignatureInvalid(
            f"{source}: signed payload is not an in-toto Statement v1", details=_errors(e)
        ) from e
    if st.predicate_type != PREDICATE_TYPE:
        raise SignatureInvalid(
            f"{source}: wrong predicate type {st.predicate_type!r}",
            details=[f"expected {PREDICATE_TYPE!r}"],
            hint="this file is not an OMS v1.0 model signature; re-sign with `mlflow-guard sign`",
        )
    if len(st.subject) != 1:
        raise SignatureInvalid(
            f"{source}: expected exactly one subject (the model), found {len(st.subject)}"
        )
    subject = st.subject[0]
    expected_root = subject.digest.get("sha256", "")
    try:
        pred = _Predicate.model_validate(st.predicate)
    except ValidationError as e:
        raise SignatureInvalid(f"{source}: malformed OMS predicate", details=_errors(e)) from e
    ser = pred.serialization
    if ser.method == "shards" and ser.shard_size is None:
        raise SignatureInvalid(f"{source}: shards serialization without shard_size")
    serialization = Serialization(
        method=ser.method,
        hash_type=ser.hash_type,
        allow_symlinks=ser.allow_symlinks,
        ignore_paths=tuple(ser.ignore_paths),
        shard_size=ser.shard_size or hashing.DEFAULT_SHARD_SIZE,
    )
    resources: dict[str, bytes] = {}
    allowed = {ser.hash_type, resource_algorithm(serialization)}
    for r in pred.resources:
        if r.algorithm not in allowed:
            raise SignatureInvalid(
                f"{source}: resource {r.name} uses {r.algorithm}, "
                f"serialization says {' or '.join(sorted(allowed))}"
            )
        if r.name in resources:
            raise SignatureInvalid(f"{source}: resource {r.name} is listed twice")
        resources[r.name] = bytes.fromhex(r.digest)
    actual_root = hashing.root_digest(resources.values())
    if actual_root != expected_root:
        raise SignatureInvalid(
            f"{source}: manifest is inconsistent with its root digest",
            details=[
                f"subject digest {expected_root or '(none)'}",
                f"resources hash to {actual_root}",
            ],
        )
    hint = (
        bundle.verification_material.public_key.hint
        if bundle.verification_material.public_key
        else ""
    )
    return (
        bundle,
        payload,
        SignedManifest(subject.name, actual_root, serialization, resources, hint),
    )
