"""Verified model loading (ML10): download, verify the OMS signature, scan, then deserialize.

``mlflow_guard.load_model(uri)`` downloads the model into a private temporary folder, verifies
its ``model.sig`` against the policy's trust store (purpose ``model``; the directory is rehashed,
no cache), scans every model file for unsafe pickle content, and only then hands the *verified
copy* to MLflow's loader — so what is loaded is exactly what was verified. Tampered, unsigned,
untrusted or unsafe → a :class:`~mlflow_guard.core.errors.VerificationError` with the precise
reason, and nothing was unpickled.

Opt-in for plain MLflow calls: :func:`enable_verified_loading` makes
``mlflow.pyfunc.load_model`` (and the named flavors' ``load_model``) go through the same path.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_guard.core import oms
from mlflow_guard.core.errors import PolicyError, VerificationError
from mlflow_guard.core.policy import Policy, Purpose, load_policy
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.plugins.gate import ROOT_TAG

_tmp_lock = threading.Lock()
_tmp_dirs: list[str] = []
_patched: dict[str, Callable[..., Any]] = {}


class UnsafeModelContent(VerificationError):
    """The model scanner found content that could run code when deserialized."""


class RegistryDigestMismatch(VerificationError):
    """A registered version's artifacts are validly signed, but not the ones it was registered
    with (e.g. another version's artifacts copied over them: a rollback)."""


@dataclass(frozen=True)
class VerifiedModel:
    """A downloaded model whose signature verified and whose files scanned clean.

    Attributes:
        uri: the URI asked for.
        local_path: the private verified copy (load from here, nowhere else).
        root_digest: OMS root digest of the model.
        signer: policy id of the signing key.
        signer_key_id: hex sha256 of the signing key.
        files: number of files verified.
        scanned: whether the scanner ran.
        registered_digest: for a registered version (``models:/NAME/VERSION`` or
            ``models:/NAME@ALIAS``), the root digest the registry recorded at registration
            (equal to ``root_digest``, or loading was refused); ``None`` otherwise.
    """

    uri: str
    local_path: Path
    root_digest: str
    signer: str
    signer_key_id: str
    files: int
    scanned: bool
    registered_digest: str | None = None


def _cleanup() -> None:
    with _tmp_lock:
        for d in _tmp_dirs:
            shutil.rmtree(d, ignore_errors=True)
        _tmp_dirs.clear()


def _private_dir() -> Path:
    d = tempfile.mkdtemp(prefix="mlflow-guard-load-")
    with _tmp_lock:
        if not _tmp_dirs:
            atexit.register(_cleanup)
        _tmp_dirs.append(d)
    return Path(d)


def trust_store(policy: str | os.PathLike[str] | None = None) -> TrustStore:
    """The trust store of the policy (``policy``, ``$MLFLOW_GUARD_POLICY`` or ``./guard.yaml``).

    Raises:
        PolicyError: no policy, or an invalid one (loading is refused: fail closed).
    """
    try:
        return TrustStore.from_policy(load_policy(policy))
    except PolicyError as e:
        raise PolicyError(
            f"cannot verify models without a policy: {e.summary}",
            details=e.details,
            hint="set MLFLOW_GUARD_POLICY to your guard.yaml (its keys say which signers "
            "are trusted), or pass policy=",
        ) from e


def scan_model_dir(path: Path, policy: Policy | None = None) -> None:
    """Scan a model directory; raise when anything is unsafe or the scanner is unavailable.

    Raises:
        UnsafeModelContent: findings (listed), or no scanner installed (fail closed).
    """
    from mlflow_guard.scanning import scan_model

    report = scan_model(path, policy)
    if not report.safe:
        raise UnsafeModelContent(
            f"model files contain unsafe content; refusing to deserialize {path.name}",
            details=[f"{f.path}: {f.reason}" for f in report.findings[:20]],
            hint="do not load this model; investigate who produced it",
        )


@dataclass(frozen=True)
class _Resolved:
    location: str
    version: str | None = None  # "NAME version N" for a registered version
    recorded: str | None = None  # the root digest the registry recorded for it


def _resolve(uri: str) -> _Resolved:
    """Resolve a ``models:/`` URI once: artifact location, and for a registered version the
    root digest recorded at registration (alias or ``latest`` resolved in the same step)."""
    if not uri.startswith("models:"):
        return _Resolved(uri)
    import mlflow
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    name, version, location = ModelsArtifactRepository._get_model_uri_infos(uri)  # type: ignore[no-untyped-call]
    if name is None or version is None:  # models:/m-<id>: a logged model, no registry entry
        return _Resolved(str(location))
    mv = mlflow.MlflowClient(registry_uri=mlflow.get_registry_uri()).get_model_version(
        name, version
    )
    return _Resolved(str(location), f"{name} version {version}", (mv.tags or {}).get(ROOT_TAG))


def download(uri: str, dst: Path) -> Path:
    """Download the model at ``uri`` into ``dst`` exactly as stored.

    ``models:/`` URIs are resolved to the underlying artifact location first: MLflow's models
    repository adds a ``registered_model_meta`` file on download, which is not part of the
    signed model.
    """
    return _fetch(_resolve(uri).location, dst)


def _fetch(uri: str, dst: Path) -> Path:
    import mlflow.artifacts

    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))
    p = Path(local)
    if p.is_file():
        raise VerificationError(
            f"{uri} names a single file, not a model directory",
            hint="pass the model's URI (models:/NAME/VERSION, runs:/ID/PATH or a folder)",
        )
    return p


def _drop_unverified(local: Path, ignore_paths: Iterable[str]) -> None:
    """Delete what the signature left unverified (its ``ignore_paths``) from the private copy.

    No MLflow loader reads ``.git*`` or other ignored paths today, but nothing that was not
    verified should be there for one to find: only verified files (and ``model.sig``) remain.
    Paths are relative and stay inside the copy (checked when the signature was verified), and
    the copy is private, so nothing can be swapped in between.
    """
    for rel in ignore_paths:
        if rel == oms.SIGNATURE_FILE:
            continue
        target = local / rel
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)


def download_and_verify(
    uri: str,
    *,
    policy: str | os.PathLike[str] | None = None,
    trust: TrustStore | None = None,
    scan: bool = True,
) -> VerifiedModel:
    """Download ``uri`` into a private folder, verify its signature and (by default) scan it.

    For a registered version whose registry recorded a root digest at registration
    (``mlflow_guard.root_sha256``, written by the guard server or the ``guard+`` stores), the
    verified digest must equal it: a valid signature alone does not say *which* model it is.

    Raises:
        PolicyError: no usable policy.
        SignatureInvalid: unsigned, or the signature is malformed or does not verify.
        KeyNotTrusted: signer unknown, revoked, expired or not trusted for ``model``.
        ManifestMismatch: files added, removed or changed since signing.
        UnsafeModelContent: the scanner found unsafe content.
        RegistryDigestMismatch: validly signed, but not the artifacts the version was
            registered with.
    """
    store = trust if trust is not None else trust_store(policy)
    resolved = _resolve(uri)
    local = _fetch(resolved.location, _private_dir())
    result = oms.verify_model(local, store, purpose=Purpose.MODEL)
    _drop_unverified(local, result.serialization.ignore_paths)
    if resolved.recorded is not None and result.root_digest != resolved.recorded:
        raise RegistryDigestMismatch(
            f"{uri}: the artifacts of {resolved.version} hash to {result.root_digest[:16]}…, "
            f"not the digest the registry recorded at registration ({resolved.recorded[:16]}…)",
            details=[f"artifact location: {resolved.location}"],
            hint="the artifact store was changed after registration (another, older or "
            "foreign model put in its place); restore the registered artifacts",
        )
    if scan:
        try:
            scan_policy: Policy | None = load_policy(policy)
        except PolicyError:  # an explicit trust store without a policy: default allowlist
            scan_policy = None
        scan_model_dir(local, scan_policy)
    return VerifiedModel(
        uri=uri,
        local_path=local,
        root_digest=result.root_digest,
        signer=result.key.name,
        signer_key_id=result.key.key_id,
        files=result.files,
        scanned=scan,
        registered_digest=resolved.recorded,
    )


def load_model(
    uri: str,
    *,
    flavor: str = "pyfunc",
    policy: str | os.PathLike[str] | None = None,
    trust: TrustStore | None = None,
    **kwargs: Any,
) -> Any:
    """Load a model after verifying and scanning it; record it as a base model for lineage.

    Args:
        uri: any MLflow model URI.
        flavor: ``pyfunc`` (default), ``sklearn``, ``pytorch``… — the ``mlflow.<flavor>``
            module whose ``load_model`` deserializes the verified copy.
        policy: path of ``guard.yaml`` (default ``$MLFLOW_GUARD_POLICY`` / ``./guard.yaml``).
        trust: a trust store to use instead of the policy's.
        kwargs: passed to the flavor's ``load_model``.

    Raises:
        VerificationError: tampered, unsigned, untrusted or unsafe (nothing was deserialized).
        PolicyError: no usable policy.
    """
    verified = download_and_verify(uri, policy=policy, trust=trust)
    from mlflow_guard.core.provenance import BaseModelRef
    from mlflow_guard.lineage import base_models

    base_models.record(
        BaseModelRef(uri, verified.root_digest, verified.signer_key_id, verified.signer)
    )
    module: Any = importlib.import_module(f"mlflow.{flavor}")
    loader = _patched.get(flavor) or module.load_model
    return loader(str(verified.local_path), **kwargs)


def enable_verified_loading(
    flavors: Iterable[str] = ("pyfunc", "sklearn"), *, policy: str | None = None
) -> None:
    """Opt-in: make ``mlflow.<flavor>.load_model`` verify and scan before loading.

    Idempotent. After this call ``mlflow.pyfunc.load_model(uri)`` behaves like
    ``mlflow_guard.load_model(uri)``: an unsigned or tampered model raises instead of loading.
    """
    for flavor in flavors:
        if flavor in _patched:
            continue
        mod: Any = importlib.import_module(f"mlflow.{flavor}")
        original = mod.load_model
        _patched[flavor] = original

        @functools.wraps(original)
        def guarded(model_uri: str, *args: Any, _f: str = flavor, **kwargs: Any) -> Any:
            verified = download_and_verify(str(model_uri), policy=policy)
            return _patched[_f](str(verified.local_path), *args, **kwargs)

        mod.load_model = guarded


def disable_verified_loading() -> None:
    """Undo :func:`enable_verified_loading`."""
    for flavor, original in list(_patched.items()):
        module: Any = importlib.import_module(f"mlflow.{flavor}")
        module.load_model = original
        del _patched[flavor]
