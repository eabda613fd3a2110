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

The covered components are fixed, so :class:`ResponseSigner` assembles the RFC 9421 §2.5
signature base itself from precomputed lines (the ``http-message-signatures`` package's
general builder cost ≈0.3 ms per response) and signs it with ``cryptography``. Verification
stays with the package: :func:`verify_response` uses its ``HTTPMessageVerifier``, and the
tests prove every response the fast signer makes verifies with it, byte for byte the base
the package's ``prepare()`` builds. Any RFC 9421 verifier that knows the public key can
check a response.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from http_message_signatures import (
    HTTPMessageSignaturesException,
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
_REQUEST_DIGEST_NAME = REQUEST_DIGEST_HEADER.lower().encode("ascii")
_HEADER_NAMES = {
    b"content-digest": "Content-Digest",
    MODEL_HEADER.lower().encode("ascii"): MODEL_HEADER,
    REQUEST_DIGEST_HEADER.lower().encode("ascii"): REQUEST_DIGEST_HEADER,
    b"signature-input": "Signature-Input",
    b"signature": "Signature",
}
_COMPONENTS: tuple[tuple[str, bool], ...] = (  # (name, from the request: ";req")
    ("@status", False),
    ("content-type", False),
    ("content-digest", False),
    ("x-model-root-digest", False),
    ("x-request-content-digest", False),
    ("@method", True),
    ("@path", True),
)
#: The covered components, as ``HTTPMessageVerifier.verify(require_components=...)`` takes them.
RESPONSE_COMPONENTS: tuple[str, ...] = tuple(
    f'"{name}";req' if req else name for name, req in _COMPONENTS
)
#: Components covered when the request line cannot be represented (then ``;req`` is left out).
FALLBACK_COMPONENTS: tuple[str, ...] = RESPONSE_COMPONENTS[:5]
DEFAULT_MAX_AGE = timedelta(minutes=5)

_SF_STRING_CHARS = re.compile(r"[\x20-\x7e]*")
_FIELD_VALUE = re.compile(r"[\x20-\x7e\t]*")
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Z]+")  # RFC 9110 token, upper case
_PCHAR = r"A-Za-z0-9._~\-!$&'()*+,;=:@/"  # RFC 3986 unreserved, sub-delims, ":", "@", "/"
_PATH = re.compile(rf"/(?:[{_PCHAR}]|%[0-9A-Fa-f]{{2}})*")


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


def _sf_string(value: str) -> str:
    """RFC 8941 §4.1.6 sf-string serialization (printable ASCII only; used at start-up)."""
    if not _SF_STRING_CHARS.fullmatch(value):
        raise ValueError(f"not representable as a Structured Field String: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _component_id(name: str, req: bool) -> str:
    """A component identifier as it appears in the base and in ``Signature-Input``."""
    return _sf_string(name) + (";req" if req else "")


def _field_value(name: str, value: str) -> str:
    """RFC 9421 §2.1 value of a single-line field: trimmed; printable ASCII and HTAB only.

    Raises:
        ValueError: the value cannot appear in a signature base (control or non-ASCII
            characters); the caller answers 500 rather than an unsigned response.
    """
    trimmed = value.strip(" \t")
    if not _FIELD_VALUE.fullmatch(trimmed):
        raise ValueError(f"{name} value cannot be signed: {value!r}")
    return trimmed


def _raw_signer(key: keys.PrivateKey) -> Callable[[bytes], bytes]:
    """Sign with ``cryptography``; ECDSA output as RFC 9421 §3.3.4 ``r || s`` (32 bytes each)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    ecdsa = ec.ECDSA(hashes.SHA256())

    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ecdsa))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


class ResponseSigner:
    """Signs responses with one private key (thread-safe; one instance per server).

    The covered components are fixed (:data:`RESPONSE_COMPONENTS`, or
    :data:`FALLBACK_COMPONENTS` when the request line cannot be represented), so the RFC 9421
    §2.5 signature base is assembled from precomputed lines: each line is the component
    identifier, ``": "`` and the component value; the last line is ``"@signature-params"``
    with the serialized inner list of identifiers and the parameters ``created``, ``keyid``,
    ``alg`` and ``tag``. The tests check the bytes against the ``http-message-signatures``
    package's own ``prepare()`` and every header against the ``http_sf`` serializer, and
    verify the responses with the package's ``HTTPMessageVerifier``.

    Args:
        private_key: Ed25519 or ECDSA P-256 key.
        model_root_digest: hex OMS root digest of the served model.
        clock: Unix time source for ``created`` (tests).
    """

    def __init__(
        self,
        private_key: keys.PrivateKey,
        model_root_digest: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.algorithm = algorithm_for(private_key)
        self.key_id = keys.key_id(private_key.public_key())
        self.model_header = _field_value(MODEL_HEADER, f"sha256:{model_root_digest}")
        self._model_name = MODEL_HEADER.lower().encode("ascii")
        self._model_value = self.model_header.encode("ascii")
        self._clock = clock
        self._sign_bytes = _raw_signer(private_key)
        suffix = (
            f";keyid={_sf_string(self.key_id)};alg={_sf_string(self.algorithm.algorithm_id)}"
            f";tag={_sf_string(TAG)}"
        )
        self._full = self._template(_COMPONENTS, suffix)
        self._fallback = self._template(_COMPONENTS[:5], suffix)

    @staticmethod
    def _template(components: tuple[tuple[str, bool], ...], suffix: str) -> tuple[str, str]:
        ids = [_component_id(name, req) for name, req in components]
        return "(" + " ".join(ids) + ");created=", suffix

    def signature_base(
        self,
        *,
        status: int,
        content_type: str,
        content_digest_value: str,
        request_body_digest: str,
        method: str,
        raw_path: str,
        created: int,
    ) -> tuple[bytes, str]:
        """The RFC 9421 signature base and the ``@signature-params`` value for one response.

        ``@method``/``@path`` (``;req``) are covered when the method is an upper-case token
        and the path (``raw_path`` up to ``?``) is ``/`` and RFC 3986 path characters; otherwise
        the request line is left out (:data:`FALLBACK_COMPONENTS`) and a verifier requiring
        :data:`RESPONSE_COMPONENTS` refuses the response.

        Raises:
            ValueError: a covered value cannot be signed (control or non-ASCII characters).
        """
        if not 100 <= status <= 999:
            raise ValueError(f"@status {status} is not a three-digit status code")
        lines = (
            f'"@status": {status}\n'
            f'"content-type": {_field_value("content-type", content_type)}\n'
            f'"content-digest": {_field_value("content-digest", content_digest_value)}\n'
            f'"x-model-root-digest": {self.model_header}\n'
            f'"x-request-content-digest": '
            f"{_field_value('x-request-content-digest', request_body_digest)}\n"
        )
        path = raw_path.partition("?")[0] or "/"
        if _METHOD.fullmatch(method) and _PATH.fullmatch(path):
            lines += f'"@method";req: {method}\n"@path";req: {path}\n'
            head, tail = self._full
        else:
            head, tail = self._fallback
        params = f"{head}{created}{tail}"
        return f'{lines}"@signature-params": {params}'.encode("ascii"), params

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
        """The ``Content-Type``, digest, model and signature headers of one response.

        Raises:
            ValueError: a covered value cannot be signed (the caller answers 500 instead).
        """
        pairs = self.header_pairs(
            status=status,
            content_type=content_type,
            body=body,
            request_body_digest=request_body_digest,
            method=method,
            raw_path=raw_path,
        )
        out = {"Content-Type": content_type}
        out.update((_HEADER_NAMES[name], value.decode("latin-1")) for name, value in pairs)
        return out

    def header_pairs(
        self,
        *,
        status: int,
        content_type: str,
        body: bytes,
        request_body_digest: str,
        method: str,
        raw_path: str,
    ) -> list[tuple[bytes, bytes]]:
        """The signed headers as ASGI pairs, without ``Content-Type`` (sent by the app).

        Raises:
            ValueError: a covered value cannot be signed (the caller answers 500 instead).
        """
        digest, params, signature = self._sign(
            status, content_type, body, request_body_digest, method, raw_path
        )
        return [
            (b"content-digest", digest.encode("ascii")),
            (self._model_name, self._model_value),
            (_REQUEST_DIGEST_NAME, request_body_digest.encode("latin-1")),
            (b"signature-input", f"{LABEL}={params}".encode("ascii")),
            (b"signature", f"{LABEL}=:{signature}:".encode("ascii")),
        ]

    def _sign(
        self,
        status: int,
        content_type: str,
        body: bytes,
        request_body_digest: str,
        method: str,
        raw_path: str,
    ) -> tuple[str, str, str]:
        digest = content_digest(body)
        base, params = self.signature_base(
            status=status,
            content_type=content_type,
            content_digest_value=digest,
            request_body_digest=request_body_digest,
            method=method,
            raw_path=raw_path,
            created=int(self._clock()),
        )
        return digest, params, base64.b64encode(self._sign_bytes(base)).decode("ascii")


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
