"""Signed prediction responses (ML09): HTTP Message Signatures (RFC 9421) over RFC 9530 digests.

Every response of ``mlflow-guard serve`` carries:

- ``Content-Digest: sha-256=:…:`` — RFC 9530 digest of the body as sent;
- ``X-Model-Root-Digest: sha256:<hex>`` — the OMS root digest of the verified model that
  answered;
- ``X-Request-Content-Digest: sha-256=:…:`` — digest of the request body the server received
  (binds a prediction to its input);
- ``Signature-Input`` / ``Signature`` (label ``guard``, tag ``mlflow-guard-serving``) covering
  ``@status``, ``content-type``, those three digests, and the request's ``@method`` and
  ``@path`` (``;req``), with ``created``, ``keyid`` (hex sha256 of the public key's
  SubjectPublicKeyInfo DER) and ``alg`` (``ecdsa-p256-sha256`` or ``ed25519``).

The signature base is built by the ``http-message-signatures`` package, so any RFC 9421
verifier that knows the public key can check a response; :func:`verify_response` is the
convenience verifier for ``requests``-style responses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)

from mlflow_guard.core import keys
from mlflow_guard.core.errors import KeyMaterialError, SignatureInvalid

LABEL = "guard"
TAG = "mlflow-guard-serving"
MODEL_HEADER = "X-Model-Root-Digest"
REQUEST_DIGEST_HEADER = "X-Request-Content-Digest"
RESPONSE_COMPONENTS: tuple[str, ...] = (
    "@status",
    "content-type",
    "content-digest",
    "x-model-root-digest",
    "x-request-content-digest",
    '"@method";req',
    '"@path";req',
)
#: Components covered when the request line cannot be represented (then ``;req`` is left out).
FALLBACK_COMPONENTS: tuple[str, ...] = RESPONSE_COMPONENTS[:5]
DEFAULT_MAX_AGE = timedelta(minutes=5)


def content_digest(body: bytes) -> str:
    """RFC 9530 ``Content-Digest`` value (sha-256) of ``body``."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def algorithm_for(
    key: keys.PrivateKey | keys.PublicKey,
) -> type[algorithms.HTTPSignatureAlgorithm]:
    """The RFC 9421 algorithm of a key: ``ed25519`` or ``ecdsa-p256-sha256``.

    Raises:
        KeyMaterialError: any other key type or curve.
    """
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return algorithms.ED25519
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return algorithms.ECDSA_P256_SHA256
    raise KeyMaterialError(
        f"response signing needs an Ed25519 or ECDSA P-256 key, got {keys.algorithm_name(key)}",
        hint="generate one with `mlflow-guard keys generate` (default ECDSA P-256)",
    )


@dataclass
class _Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Response:
    status_code: int
    headers: dict[str, str]
    request: _Request | None


class ResponseSigner:
    """Signs responses with one private key (thread-safe; one instance per server).

    Args:
        private_key: Ed25519 or ECDSA P-256 key.
        model_root_digest: hex OMS root digest of the served model.
    """

    def __init__(self, private_key: keys.PrivateKey, model_root_digest: str) -> None:
        self.algorithm = algorithm_for(private_key)
        self.key_id = keys.key_id(private_key.public_key())
        self.model_header = f"sha256:{model_root_digest}"
        self._signer = HTTPMessageSigner(signature_algorithm=self.algorithm)
        self._sign_bytes = self.algorithm(private_key=private_key).sign

    def headers_for(
        self,
        *,
        status: int,
        content_type: str,
        body: bytes,
        request_body_digest: str,
        method: str,
        raw_path: str,
    ) -> dict[str, str]:
        """The digest, model and signature headers to add to one response.

        Raises:
            HTTPMessageSignaturesException: a header value cannot be signed (a bug upstream).
        """
        headers = {
            "Content-Type": content_type,
            "Content-Digest": content_digest(body),
            MODEL_HEADER: self.model_header,
            REQUEST_DIGEST_HEADER: request_body_digest,
        }
        request = _Request(method, "http://serving.invalid" + (raw_path or "/"))
        message = _Response(status, headers, request)
        try:
            self._sign(message, RESPONSE_COMPONENTS)
        except HTTPMessageSignaturesException:
            message.request = None
            self._sign(message, FALLBACK_COMPONENTS)
        return headers

    def _sign(self, message: _Response, components: tuple[str, ...]) -> None:
        # The package builds the signature base (prepare); the headers of a fresh message are
        # then a one-member Structured Field Dictionary each, as ``apply`` would write them
        # (``apply`` re-derives the whole base only to re-check what prepare just built).
        prepared = self._signer.prepare(
            message,
            key_id=self.key_id,
            label=LABEL,
            tag=TAG,
            covered_component_ids=components,
            use_existing_digest=True,
        )
        signature = base64.b64encode(self._sign_bytes(prepared.signature_base)).decode("ascii")
        message.headers["Signature-Input"] = f"{LABEL}={prepared.signature_params}"
        message.headers["Signature"] = f"{LABEL}=:{signature}:"


@dataclass(frozen=True)
class VerifiedResponse:
    """What a verified response proves.

    Attributes:
        key_id: hex sha256 of the signing key.
        model_root_digest: hex OMS root digest of the model that answered.
        created: signature creation time (Unix seconds).
        covered: the covered components and their signed values.
    """

    key_id: str
    model_root_digest: str
    created: int
    covered: dict[str, str]


def verify_response(
    response: Any,
    public_key: keys.PublicKey,
    *,
    expected_model_digest: str | None = None,
    max_age: timedelta | None = DEFAULT_MAX_AGE,
) -> VerifiedResponse:
    """Verify a signed prediction response (e.g. a ``requests.Response``).

    Checks the RFC 9421 signature (label/tag ``mlflow-guard-serving``, all components of
    :data:`RESPONSE_COMPONENTS` covered), the ``Content-Digest`` against the body, the request
    digest against ``response.request.body`` when that is available, and optionally the model.

    Args:
        response: object with ``status_code``, ``headers``, ``content`` and ``request``
            (``method``, ``url``, ``body``).
        public_key: the server's response-signing public key.
        expected_model_digest: hex OMS root digest the answer must come from.
        max_age: oldest acceptable signature (``None``: no limit).

    Raises:
        SignatureInvalid: missing, malformed, stale or wrong signature, body or request digest
            mismatch, or another model answered.
    """
    algorithm = algorithm_for(public_key)
    kid = keys.key_id(public_key)
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithm,
        key_resolver=MappingKeyResolver(public_keys={kid: public_key}, private_keys={}),
    )
    body = response.content if response.content is not None else b""
    try:
        results = verifier.verify(
            response,
            max_age=max_age,
            expect_tag=TAG,
            require_components=RESPONSE_COMPONENTS,
            body=bytes(body),
        )
    except (InvalidSignature, HTTPMessageSignaturesException) as e:
        raise SignatureInvalid(
            f"response signature does not verify: {e}",
            details=[f"signer key id expected {kid}"],
            hint="the response was altered in transit, signed by another key, or is too old; "
            "do not use this prediction",
        ) from e
    result = results[0]
    covered = dict(result.covered_components)
    model = covered.get('"x-model-root-digest"', "").removeprefix("sha256:")
    if expected_model_digest is not None and not hmac.compare_digest(model, expected_model_digest):
        raise SignatureInvalid(
            "the response was produced by another model",
            details=[f"expected root digest {expected_model_digest}", f"got {model}"],
            hint="check which model this endpoint serves",
        )
    _check_request_digest(response, covered)
    created = result.parameters.get("created")
    return VerifiedResponse(kid, model, int(created) if created is not None else 0, covered)


def _check_request_digest(response: Any, covered: dict[str, str]) -> None:
    request = getattr(response, "request", None)
    sent = getattr(request, "body", None)
    if request is None:
        return
    raw = sent.encode("utf-8") if isinstance(sent, str) else (sent or b"")
    if not isinstance(raw, bytes):
        return  # a streamed body: the caller must compare the digest itself
    signed = covered.get('"x-request-content-digest"', "")
    if not hmac.compare_digest(signed, content_digest(raw)):
        raise SignatureInvalid(
            "the signed response answers a different request body",
            details=[f"signed request digest {signed}", f"sent {content_digest(raw)}"],
            hint="a response was swapped or replayed; do not use this prediction",
        )
