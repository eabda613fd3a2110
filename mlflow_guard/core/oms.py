"""OpenSSF Model Signing (OMS) v1.0 signatures: sign and verify model directories.

Format: a Sigstore bundle (``application/vnd.dev.sigstore.bundle.v0.3+json``) whose
``dsseEnvelope`` holds an in-toto Statement v1 with predicate type
``https://model_signing/signature/v1.0``. The predicate lists every file (or shard) in
``resources`` and records the ``serialization``; the single subject's sha256 digest is the root
digest (sha256 over the resource digests in manifest order). Key-based bundles carry
``verificationMaterial.publicKey.hint`` = hex sha256 of the signer's public key PEM.

A bundle written here verifies with ``model_signing verify key`` and a bundle written by
``model_signing sign key`` verifies here. Verification rehashes the directory with the
recorded serialization and reports exactly which files were added, removed or changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlflow_guard.core import dsse, hashing, keys
from mlflow_guard.core.errors import (
    KeyNotTrusted,
    ManifestMismatch,
    SignatureInvalid,
    UsageError,
)
from mlflow_guard.core.hashing import DigestCache, ProgressCallback, Serialization
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
SIGNATURE_FILE = "model.sig"
_HEX = r"^[0-9a-f]+$"


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
    digest: str = Field(pattern=_HEX)
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


@dataclass(frozen=True)
class SignResult:
    """Outcome of signing a model directory."""

    signature_path: Path
    root_digest: str
    key_id: str
    files: int
    bytes: int
    serialization: Serialization


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a successful verification."""

    root_digest: str
    key: TrustedKey
    files: int
    bytes: int
    serialization: Serialization
    model_name: str


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
        raw = json.loads(data)
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
    payload = dsse.b64decode(bundle.dsse_envelope.payload, f"{source}: DSSE payload")
    try:
        st = _Statement.model_validate(json.loads(payload))
    except (ValueError, UnicodeDecodeError) as e:
        raise SignatureInvalid(f"{source}: signed payload is not valid JSON") from e
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


def verify_bundle(
    data: bytes,
    trust: TrustStore,
    *,
    purpose: Purpose = Purpose.MODEL,
    source: str = SIGNATURE_FILE,
) -> tuple[SignedManifest, TrustedKey]:
    """Check an OMS bundle's signature against the trust store; return its manifest and signer.

    Only the first DSSE signature counts, as in the reference verifier.

    Raises:
        SignatureInvalid: malformed bundle, or the signature does not verify.
        KeyNotTrusted: the signer is unknown, revoked, expired or not trusted for ``purpose``.
    """
    bundle, payload, manifest = parse_bundle(data, source=source)
    vm = bundle.verification_material
    if vm.public_key is None:
        kinds = sorted(k for k in (vm.model_extra or {}) if k != "tlogEntries")
        raise KeyNotTrusted(
            f"{source} is signed with {', '.join(kinds) or 'no key material'}, not a public key",
            hint="certificate and Sigstore keyless signatures are not in the key trust store; "
            "sign with a key listed in the policy",
        )
    sig = dsse.b64decode(bundle.dsse_envelope.signatures[0].sig, f"{source}: signature")
    message = dsse.pae(dsse.INTOTO_PAYLOAD_TYPE, payload)
    if manifest.key_hint:
        candidates = [trust.resolve(manifest.key_hint, purpose)]
    else:
        candidates = trust.candidates(purpose)
        if not candidates:
            raise KeyNotTrusted(f"no key in the trust store is usable for '{purpose.value}'")
    for key in candidates:
        try:
            key.verifier.verify(message, sig)
        except SignatureInvalid:
            continue
        return manifest, key
    raise SignatureInvalid(
        f"{source}: signature does not verify with key "
        f"{candidates[0].name if len(candidates) == 1 else '(any trusted key)'}",
        hint="the signature file was altered, or made by another key; re-sign the model",
    )


def _file_of(name: str, method: str) -> str:
    if method == "shards":
        head = name.rsplit(":", 2)
        return head[0] if len(head) == 3 else name
    return name


def diff_resources(
    expected: dict[str, bytes], actual: dict[str, bytes], method: str = "files"
) -> tuple[list[str], list[str], list[str]]:
    """Return (removed, added, changed) file paths between two resource maps."""
    exp_files: dict[str, dict[str, bytes]] = {}
    act_files: dict[str, dict[str, bytes]] = {}
    for n, d in expected.items():
        exp_files.setdefault(_file_of(n, method), {})[n] = d
    for n, d in actual.items():
        act_files.setdefault(_file_of(n, method), {})[n] = d
    removed = sorted(set(exp_files) - set(act_files))
    added = sorted(set(act_files) - set(exp_files))
    changed = sorted(f for f in set(exp_files) & set(act_files) if exp_files[f] != act_files[f])
    return removed, added, changed


def _ignore_for(
    model_dir: Path, signature_path: Path, extra: Iterable[str], *, git: bool = True
) -> tuple[str, ...]:
    paths = list(extra) + (list(hashing.GIT_PATHS) if git else [])
    with contextlib.suppress(ValueError):
        paths.append(signature_path.resolve().relative_to(model_dir.resolve()).as_posix())
    return hashing.normalize_ignore_paths(paths)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model.sig.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sign_model(
    model_dir: str | os.PathLike[str],
    signer: keys.Signer,
    *,
    hash_type: hashing.HashAlgorithm = "sha256",
    method: Literal["files", "shards"] = "files",
    shard_size: int = hashing.DEFAULT_SHARD_SIZE,
    ignore_paths: Iterable[str] = (),
    signature_path: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    cache: DigestCache | None = None,
) -> SignResult:
    """Hash ``model_dir`` and write an OMS bundle (default ``model_dir/model.sig``).

    The signature file and git metadata are excluded from the manifest. Symlinks are refused.

    Raises:
        UsageError: not a directory, bad ignore path, unsupported algorithm.
        UnsafePath: a symlink or special file in the directory.
    """
    root = Path(model_dir)
    sig_path = Path(signature_path) if signature_path else root / SIGNATURE_FILE
    serialization = Serialization(
        method=method,
        hash_type=hash_type,
        ignore_paths=_ignore_for(root, sig_path, ignore_paths),
        shard_size=shard_size,
    )
    files = hashing.list_files(root, serialization.ignore_paths)
    resources = hashing.hash_entries(
        files, serialization, workers=workers, progress=progress, cache=cache
    )
    model_name = root.resolve().name
    bundle = build_bundle(resources, serialization, model_name, signer)
    _write_atomic(sig_path, json.dumps(bundle, indent=2).encode("utf-8"))
    return SignResult(
        signature_path=sig_path,
        root_digest=hashing.root_digest(resources.values()),
        key_id=signer.key_id,
        files=len(files),
        bytes=sum(f.size for f in files),
        serialization=serialization,
    )


def verify_model(
    model_dir: str | os.PathLike[str],
    trust: TrustStore,
    *,
    signature_path: str | os.PathLike[str] | None = None,
    purpose: Purpose = Purpose.MODEL,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    at: datetime | None = None,
) -> VerifyResult:
    """Verify ``model_dir`` against its OMS signature and the trust store.

    Order: parse and check the bundle, check the signer's trust and signature, then rehash the
    directory with the recorded serialization (never a cache) and compare every resource.

    Raises:
        SignatureInvalid: missing, malformed or non-verifying signature.
        KeyNotTrusted: signer unknown, revoked, expired or of another purpose.
        ManifestMismatch: files added, removed or changed (listed).
        UnsafePath: a symlink or special file in the directory.
    """
    root = Path(model_dir)
    if root.is_symlink() or not root.is_dir():
        raise UsageError(f"{root} is not a directory", hint="pass the model's directory")
    sig_path = Path(signature_path) if signature_path else root / SIGNATURE_FILE
    try:
        data = sig_path.read_bytes()
    except FileNotFoundError as e:
        raise SignatureInvalid(
            f"{root} is not signed: {sig_path.name} not found",
            hint=f"sign it with `mlflow-guard sign {root} --key KEY`",
        ) from e
    except OSError as e:
        raise SignatureInvalid(f"cannot read {sig_path}: {e.strerror or e}") from e
    manifest, key = verify_bundle(data, trust, purpose=purpose, source=str(sig_path))
    if at is not None:
        trust.check(key, purpose, at)
    ser = manifest.serialization
    if ser.allow_symlinks:
        raise SignatureInvalid(
            f"{sig_path}: signature allows symlinks, which mlflow-guard never follows",
            hint="re-sign without --allow-symlinks",
        )
    # Only what the signer recorded (plus the signature file itself): a signature that did
    # not ignore .git* paths must not let such files slip in unnoticed.
    try:
        ignore = _ignore_for(root, sig_path, ser.ignore_paths, git=False)
    except UsageError as e:
        raise SignatureInvalid(
            f"{sig_path}: the signed ignore_paths are unsafe", details=[e.summary]
        ) from e
    files = hashing.list_files(root, ignore)
    actual = hashing.hash_entries(files, ser, workers=workers, progress=progress)
    if actual != manifest.resources:
        removed, added, changed = diff_resources(manifest.resources, actual, ser.method)
        raise ManifestMismatch(
            f"{root} does not match its signature",
            missing=removed,
            extra=added,
            changed=changed,
            hint="restore the original files, or re-sign after an intended change",
        )
    return VerifyResult(
        root_digest=manifest.root_digest,
        key=key,
        files=len(files),
        bytes=sum(f.size for f in files),
        serialization=ser,
        model_name=manifest.model_name,
    )
