"""DSSE (Dead Simple Signing Envelope) v1: pre-authentication encoding, envelopes, verification.

Spec: https://github.com/secure-systems-lab/dsse. The signature covers
``PAE(payloadType, payload) = "DSSEv1" SP len(type) SP type SP len(body) SP body``. The JSON
envelope carries the payload base64-encoded; signatures carry an optional ``keyid``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlflow_guard.core import keys
from mlflow_guard.core.errors import KeyNotTrusted, SignatureInvalid
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
_URLSAFE = str.maketrans("-_", "+/")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


class Signature(BaseModel):
    """One DSSE signature."""

    model_config = ConfigDict(extra="forbid")

    sig: str
    keyid: str = ""


class Envelope(BaseModel):
    """A DSSE envelope (JSON form)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    payload: str
    payload_type: str = Field(alias="payloadType")
    signatures: list[Signature]

    def payload_bytes(self) -> bytes:
        """The decoded payload.

        Raises:
            SignatureInvalid: the payload is not valid base64.
        """
        return b64decode(self.payload, "DSSE payload")

    def to_json(self) -> dict[str, Any]:
        """The envelope as a JSON-ready dict with DSSE field names."""
        return self.model_dump(by_alias=True)


def b64decode(value: str, what: str) -> bytes:
    """Strict, canonical base64 (URL-safe accepted, as DSSE allows either).

    Non-canonical encodings (stray bits in the last character, missing or extra padding in
    standard form) are refused, so one signed value has exactly one encoding.
    """
    try:
        if "-" in value or "_" in value:
            value = value.translate(_URLSAFE) + "=" * (-len(value) % 4)
        out = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SignatureInvalid(f"{what} is not valid base64") from e
    if base64.b64encode(out).decode("ascii") != value:
        raise SignatureInvalid(f"{what} is not canonical base64 (stray bits or padding)")
    return out


def sign(
    payload: bytes, payload_type: str, signer: keys.Signer, *, keyid: str | None = None
) -> Envelope:
    """Sign ``payload`` into a DSSE envelope (``keyid`` defaults to the signer's key id)."""
    sig = signer.sign(pae(payload_type, payload))
    return Envelope(
        payload=base64.b64encode(payload).decode("ascii"),
        payload_type=payload_type,
        signatures=[
            Signature(
                sig=base64.b64encode(sig).decode("ascii"),
                keyid=signer.key_id if keyid is None else keyid,
            )
        ],
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def loads_strict(data: bytes | str) -> Any:
    """``json.loads`` that refuses an object with a repeated key.

    JSON parsers disagree on which of two equal keys wins (Python keeps the last, others the
    first), so a signed document with one could mean different things to two verifiers.

    Raises:
        ValueError: not JSON (``json.JSONDecodeError``) or a repeated key.
        UnicodeDecodeError: bytes that are not UTF-8.
    """
    return json.loads(data, object_pairs_hook=_no_duplicate_keys)


def parse(data: bytes | str | dict[str, Any], *, source: str = "envelope") -> Envelope:
    """Parse a DSSE envelope from JSON bytes, text or an already-decoded dict.

    Raises:
        SignatureInvalid: not JSON, or not of the DSSE envelope shape.
    """
    if not isinstance(data, dict):
        try:
            data = loads_strict(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise SignatureInvalid(f"{source} is not valid JSON", details=[str(e)]) from e
    try:
        env = Envelope.model_validate(data)
    except ValidationError as e:
        raise SignatureInvalid(
            f"{source} is not a DSSE envelope",
            details=[
                f"{'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors()
            ],
        ) from e
    if not env.signatures:
        raise SignatureInvalid(f"{source} carries no signature", hint="sign it first")
    return env


def verify(
    env: Envelope,
    trust: TrustStore,
    purpose: Purpose,
    *,
    expected_payload_type: str = INTOTO_PAYLOAD_TYPE,
) -> tuple[bytes, TrustedKey]:
    """Verify an envelope against the trust store; return the payload and the key that signed.

    A signature whose ``keyid`` names a trusted key is checked with that key; one without a
    ``keyid`` is tried against every key usable for ``purpose``. The first valid signature wins.

    Raises:
        SignatureInvalid: wrong payload type, or no signature verifies.
        KeyNotTrusted: the only keys named are unknown, revoked, expired or of another purpose.
    """
    if env.payload_type != expected_payload_type:
        raise SignatureInvalid(
            f"unexpected DSSE payloadType {env.payload_type!r}",
            details=[f"expected {expected_payload_type!r}"],
        )
    payload = env.payload_bytes()
    message = pae(env.payload_type, payload)
    trust_errors: list[KeyNotTrusted] = []
    for s in env.signatures:
        raw = b64decode(s.sig, "DSSE signature")
        if s.keyid:
            try:
                candidates = [trust.resolve(s.keyid, purpose)]
            except KeyNotTrusted as e:
                trust_errors.append(e)
                continue
        else:
            candidates = trust.candidates(purpose)
        for key in candidates:
            try:
                key.verifier.verify(message, raw)
            except SignatureInvalid:
                continue
            return payload, key
    if trust_errors and len(trust_errors) == len(env.signatures):
        raise trust_errors[0]
    raise SignatureInvalid(
        f"no signature in the envelope verifies with a key trusted for '{purpose.value}'",
        hint="the content was changed after signing, or it was signed by an untrusted key",
    )
