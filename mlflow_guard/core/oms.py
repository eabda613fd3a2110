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
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from mlflow_guard.core import dsse, hashing, keys
from mlflow_guard.core.errors import (
    KeyNotTrusted,
    ManifestMismatch,
    SignatureInvalid,
    UnsafePath,
    UsageError,
)
from mlflow_guard.core.hashing import DigestCache, ProgressCallback, Serialization
from mlflow_guard.core.oms_bundle import (
    BUNDLE_MEDIA_TYPE,
    PREDICATE_TYPE,
    SIGNATURE_FILE,
    SignedManifest,
    build_bundle,
    parse_bundle,
    resource_algorithm,
)
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "PREDICATE_TYPE",
    "SIGNATURE_FILE",
    "SignResult",
    "SignedManifest",
    "VerifyResult",
    "build_bundle",
    "diff_resources",
    "parse_bundle",
    "resource_algorithm",
    "sign_model",
    "verify_bundle",
    "verify_model",
]


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
    """Write via a temp file and rename; the signature is public, so mode 0644 (mkstemp: 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model.sig.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


MAX_SIGNATURE_BYTES = 256 * 1024 * 1024


def _read_signature(root: Path, sig_path: Path, *, inside: bool) -> bytes:
    """Read a signature file: a regular file of bounded size (never a FIFO or device).

    ``DIR/model.sig`` must not be a symlink either: nothing inside a model is followed.
    """
    flags = os.O_RDONLY | (os.O_NOFOLLOW if inside else 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(sig_path, flags)
    except FileNotFoundError as e:
        raise SignatureInvalid(
            f"{root} is not signed: {sig_path.name} not found",
            hint=f"sign it with `mlflow-guard sign {root} --key KEY`",
        ) from e
    except OSError as e:
        if inside and sig_path.is_symlink():
            raise UnsafePath(
                f"refusing symlink {sig_path.name} in {root}",
                hint="a signature inside the model must be a regular file; re-sign",
            ) from e
        raise SignatureInvalid(f"cannot read {sig_path}: {e.strerror or e}") from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SignatureInvalid(f"{sig_path} is not a regular file")
        if st.st_size > MAX_SIGNATURE_BYTES:
            raise SignatureInvalid(
                f"{sig_path} is {st.st_size} bytes, more than a signature can be "
                f"({MAX_SIGNATURE_BYTES})"
            )
        return f.read(MAX_SIGNATURE_BYTES + 1)


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
    data = _read_signature(root, sig_path, inside=signature_path is None)
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
