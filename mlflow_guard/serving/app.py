"""Build and run the serving guard: verify → scan → load → MLflow scoring app → guard layer.

Nothing is deserialized before the model's OMS signature verified against the policy's trust
store (purpose ``model``) and its files scanned clean (:mod:`mlflow_guard.loading`); the model
is then loaded from that private verified copy and handed to MLflow's own scoring app
(``mlflow.pyfunc.scoring_server.init``), which keeps parsing inputs exactly as
``mlflow models serve`` does.
"""

from __future__ import annotations

import gc
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlflow_guard.core import keys
from mlflow_guard.loading import VerifiedModel, download_and_verify
from mlflow_guard.serving.auth import TokenAuth
from mlflow_guard.serving.hardening import HardenedModel, OutputPolicy
from mlflow_guard.serving.limits import QueryBudget, RateLimiter
from mlflow_guard.serving.middleware import DEFAULT_MAX_BODY, GuardLayer
from mlflow_guard.serving.signing import ResponseSigner
from mlflow_guard.tls import TLSConfig


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``mlflow-guard serve`` needs besides the model.

    Attributes:
        signing_key: response-signing key (``None``: unsigned, only when asked for).
        output: output hardening.
        rate: requests per second per client (``None``: unlimited).
        budget: predictions per client per ``budget_window`` seconds (``None``: unlimited).
        budget_window: budget window in seconds.
        max_body: largest request body in bytes.
    """

    signing_key: keys.PrivateKey | None = None
    output: OutputPolicy = field(default_factory=OutputPolicy)
    rate: float | None = None
    budget: int | None = None
    budget_window: float = 86400.0
    max_body: int = DEFAULT_MAX_BODY


@dataclass(frozen=True)
class LoadedModel:
    """A verified, scanned and loaded pyfunc model."""

    verified: VerifiedModel
    pyfunc: Any


def load_verified(model_uri: str, policy: str | os.PathLike[str] | None) -> LoadedModel:
    """Download, verify, scan, then load ``model_uri`` as a pyfunc model.

    Raises:
        VerificationError: unsigned, tampered, untrusted or unsafe (nothing was unpickled).
        PolicyError: no usable policy.
    """
    verified = download_and_verify(model_uri, policy=policy)
    import mlflow.pyfunc

    return LoadedModel(verified, mlflow.pyfunc.load_model(str(verified.local_path)))


def build_app(
    loaded: LoadedModel,
    auth: TokenAuth,
    options: ServeOptions,
    model_trust: Callable[[], str | None] | None = None,
) -> GuardLayer:
    """The ASGI app: MLflow's scoring app around the hardened model, behind the guard layer.

    ``model_trust`` (a :class:`~mlflow_guard.serving.model_trust.ModelKeyWatch`'s ``denial``)
    makes every request fail with 503 once the model's signer is no longer trusted.
    """
    from mlflow.pyfunc import scoring_server

    hardened: Any = HardenedModel(loaded.pyfunc, options.output)
    inner = scoring_server.init(hardened)
    digest = loaded.verified.root_digest
    return GuardLayer(
        app=inner,
        auth=auth,
        signer=ResponseSigner(options.signing_key, digest) if options.signing_key else None,
        model_root_digest=digest,
        rate=RateLimiter(options.rate) if options.rate else None,
        budget=QueryBudget(options.budget, options.budget_window) if options.budget else None,
        max_body=options.max_body,
        model_trust=model_trust,
    )


def uvicorn_kwargs(tls: TLSConfig) -> dict[str, Any]:
    """``uvicorn.run`` keyword arguments for TLS (mutual TLS with a client CA)."""
    if not tls.enabled:
        return {}
    kw: dict[str, Any] = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
    if tls.client_ca is not None:
        kw.update(ssl_ca_certs=str(tls.client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    return kw


def run(app: GuardLayer, host: str, port: int, tls: TLSConfig) -> None:
    """Serve ``app`` with uvicorn in this process (one worker: the model is already loaded).

    Before serving, the start-up objects (MLflow, the model, the libraries: ~300,000 of them)
    are moved out of the garbage collector's reach with :func:`gc.freeze`; otherwise a full
    collection scans them every few thousand requests and stalls one answer by ~0.3 s.
    """
    import uvicorn

    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        **uvicorn_kwargs(tls),
    )
