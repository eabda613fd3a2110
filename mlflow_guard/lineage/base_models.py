"""Base models (ML07): models a fine-tuning run started from, recorded with their signed digest.

A model loaded through :func:`mlflow_guard.load_model` is recorded automatically (its OMS
signature was verified before loading); :func:`base_model` records one explicitly (it downloads
and verifies the model, without loading it). The provenance written when a model is logged lists
every base model recorded in this process since the last :func:`clear`.
"""

from __future__ import annotations

import threading

from mlflow_guard.core.provenance import BaseModelRef

_lock = threading.Lock()
_recorded: list[BaseModelRef] = []


def record(ref: BaseModelRef) -> None:
    """Remember a verified base model (once per URI and digest)."""
    with _lock:
        if all((r.uri, r.root_digest) != (ref.uri, ref.root_digest) for r in _recorded):
            _recorded.append(ref)


def recorded() -> tuple[BaseModelRef, ...]:
    """Every base model recorded so far."""
    with _lock:
        return tuple(_recorded)


def clear() -> None:
    """Forget recorded base models (e.g. between independent trainings in one process)."""
    with _lock:
        _recorded.clear()


def base_model(uri: str, *, policy: str | None = None) -> BaseModelRef:
    """Name ``uri`` as the base model of the models logged next; verify its signature first.

    Args:
        uri: any MLflow model URI (``models:/name/1``, ``runs:/…``, a local path).
        policy: path of ``guard.yaml`` (default: ``$MLFLOW_GUARD_POLICY`` or ``./guard.yaml``).

    Raises:
        VerificationError: the model is unsigned, tampered or signed by an untrusted key.
    """
    from mlflow_guard.loading import download_and_verify

    verified = download_and_verify(uri, policy=policy, scan=False)
    ref = BaseModelRef(
        uri=uri,
        root_digest=verified.root_digest,
        signer_key_id=verified.signer_key_id,
        signer=verified.signer,
    )
    record(ref)
    return ref
