"""Signed feedback records: the wire format, canonical bytes, signing and signature checks.

A record is one JSON object (one line of a JSONL batch)::

    {"id": "01J...", "source": "checkout", "timestamp": 1764349200,
     "payload": {"prediction_id": "...", "label": "fraud"},
     "signature": {"alg": "ed25519", "keyid": "<hex sha256 of the public key DER>",
                   "sig": "<base64>"}}

The signed bytes never depend on how the line was serialized: they are the RFC 8785 (JCS)
canonical form of ``{id, source, timestamp, payload}``. Ed25519 and ECDSA P-256 sign those bytes
directly; HMAC-SHA256 follows Standard Webhooks and signs ``id.timestamp.body`` with ``body`` the
canonical bytes. ``timestamp`` is integer Unix seconds (as in Standard Webhooks).

Records whose numbers Python's ``json`` prints exactly as JCS does (integers below 2**53,
non-integral floats from 1e-4 to 1e16) and whose text has no character beyond the Basic
Multilingual Plane are canonicalized by the C ``json`` encoder (sorted keys, no whitespace,
minimal escapes: the JCS rules for that subset); everything else goes through the ``rfc8785``
package. A property test checks that the two agree.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from mlflow_guard.core import keys

ALG_ED25519: Final = "ed25519"
ALG_ECDSA_P256: Final = "ecdsa-p256"
ALG_HMAC: Final = "hmac-sha256"
ALGORITHMS: Final = frozenset({ALG_ED25519, ALG_ECDSA_P256, ALG_HMAC})

_ID = re.compile(r"[A-Za-z0-9_:-]{1,128}")  # fullmatch: "$" also matches before a "\n"
_SOURCE = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
_FIELDS = frozenset({"id", "source", "timestamp", "payload", "signature"})
_SIG_REQUIRED = frozenset({"alg", "sig"})
_SIG_FIELDS = frozenset({"alg", "sig", "keyid"})
_MAX_TS = 2**53 - 1


class MalformedRecord(ValueError):
    """The bytes are not a well-formed feedback record (reason in ``str(e)``)."""


@dataclass(frozen=True)
class Record:
    """A parsed, not yet verified, feedback record.

    Attributes:
        id: unique per source; the replay store remembers it.
        source: the policy source name (a key id, or an HMAC source id).
        timestamp: Unix seconds when the source created the record.
        payload: the feedback itself (a JSON object).
        alg: signature algorithm (``ed25519``, ``ecdsa-p256`` or ``hmac-sha256``).
        keyid: key id the signer claims (empty for HMAC).
        sig: raw signature bytes.
    """

    id: str
    source: str
    timestamp: int
    payload: dict[str, Any]
    alg: str
    keyid: str
    sig: bytes
    plain_numbers: bool = field(default=False, compare=False, repr=False)

    def unsigned(self) -> dict[str, Any]:
        """The signed part as a dict."""
        return {
            "id": self.id,
            "source": self.source,
            "timestamp": self.timestamp,
            "payload": self.payload,
        }

    def canonical(self) -> bytes:
        """RFC 8785 canonical bytes of the signed part."""
        if self.plain_numbers:
            # id and source are validated to unescaped ASCII, timestamp to a safe integer, and
            # JCS orders the members id < payload < source < timestamp.
            payload = _canonical_plain_text(self.payload)
            if payload is not None:
                text = (
                    f'{{"id":"{self.id}","payload":{payload},"source":"{self.source}",'
                    f'"timestamp":{self.timestamp}}}'
                )
                try:
                    return text.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise MalformedRecord(
                        "not canonicalizable as RFC 8785 JSON: a lone surrogate"
                    ) from e
        return canonical_bytes(self.unsigned())

    def message(self) -> bytes:
        """The exact bytes the signature covers for this record's algorithm."""
        body = self.canonical()
        return hmac_message(self.id, self.timestamp, body) if self.alg == ALG_HMAC else body


def canonical_bytes(obj: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON bytes.

    Raises:
        MalformedRecord: a value JCS cannot represent (NaN, integers beyond 2**53, ...).
    """
    import rfc8785

    try:
        out: bytes = rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        raise MalformedRecord(f"not canonicalizable as RFC 8785 JSON: {e}") from e
    except RecursionError as e:  # the encoder recurses; the C decoder may have gone deeper
        raise MalformedRecord("not canonicalizable as RFC 8785 JSON: nested too deeply") from e
    return out


_BEYOND_BMP = re.compile("[\U00010000-\U0010ffff]")
_SAFE_INT = 2**53


class _Irregular(Exception):
    """A number whose JCS text differs from Python's ``json`` text: use the general encoder."""


def _plain_int(text: str) -> int:
    value = int(text)
    if -_SAFE_INT < value < _SAFE_INT:
        return value
    raise _Irregular


def _plain_float(text: str) -> float:
    value = float(text)
    # Python's repr and ECMAScript's Number::toString both print the shortest round-trip digits;
    # in this range both use plain decimal notation, and non-integral values never print as
    # "N.0" (JCS: "N"). Anything else (exponents, integral floats, -0.0, inf) is irregular.
    if 1e-4 <= abs(value) < 1e16 and not value.is_integer():
        return value
    raise _Irregular


_PLAIN_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _canonical_plain_text(obj: Any) -> str | None:
    """JCS text of a tree parsed with the plain-number hooks, or ``None`` if it needs ``rfc8785``.

    ``None`` when the text holds a character beyond the BMP: JCS sorts keys by UTF-16 code
    units, Python by code points, and the two orders differ only there. ``None`` too when the
    tree is nested too deeply to encode (the general encoder then refuses it).
    """
    try:
        text = _PLAIN_ENCODER.encode(obj)
    except RecursionError:
        return None
    if not text.isascii() and _BEYOND_BMP.search(text):
        return None
    return text


def hmac_message(record_id: str, timestamp: int, body: bytes) -> bytes:
    """Standard Webhooks signed content: ``id.timestamp.body``."""
    return f"{record_id}.{timestamp}.".encode() + body


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise MalformedRecord("duplicate key in a JSON object")
    return out


def _no_constant(name: str) -> Any:
    raise MalformedRecord(f"{name} is not valid JSON")


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise MalformedRecord(f"{what} must be a non-empty base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise MalformedRecord(f"{what} is not valid base64") from e


_JSON_WS = " \t\n\r"
_JSON_WS_BYTES = _JSON_WS.encode("ascii")


def is_blank(line: bytes) -> bool:
    """Whether a JSONL line holds only JSON whitespace (skipped; anything else is a record).

    ``bytes.strip()`` would also drop form feeds and vertical tabs, and such a line would be
    neither accepted nor quarantined.
    """
    return not line.strip(_JSON_WS_BYTES)


_PLAIN_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs,
    parse_constant=_no_constant,
    parse_int=_plain_int,
    parse_float=_plain_float,
)
_GENERAL_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_no_constant)


def parse_record(line: bytes | str) -> Record:
    """Parse one JSONL line into a :class:`Record` (shape only; no signature check).

    Raises:
        MalformedRecord: not UTF-8 JSON, duplicate keys, missing/extra fields or wrong types.
    """
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
    except UnicodeDecodeError as e:
        raise MalformedRecord(f"not valid JSON: not UTF-8 ({e.reason} at byte {e.start})") from e
    # JSON whitespace only (str.strip() would also drop characters JSON does not allow), and a
    # UTF-8 byte order mark, which RFC 8259 lets a parser ignore.
    text = text.removeprefix("\ufeff").strip(_JSON_WS)
    plain = True
    try:
        try:
            data, end = _PLAIN_DECODER.raw_decode(text)
        except _Irregular:
            plain = False
            data, end = _GENERAL_DECODER.raw_decode(text)
    except MalformedRecord:
        raise
    except (ValueError, RecursionError) as e:
        raise MalformedRecord(f"not valid JSON: {e}") from e
    if end != len(text):
        raise MalformedRecord(f"not valid JSON: extra data after the object at character {end}")
    if not isinstance(data, dict):
        raise MalformedRecord(f"expected a JSON object, got {type(data).__name__}")
    if data.keys() != _FIELDS:
        missing = sorted(_FIELDS - data.keys())
        extra = sorted(data.keys() - _FIELDS)
        raise MalformedRecord(f"fields: missing {missing}, unexpected {extra}")
    rid, source, ts, payload, sig = (
        data["id"],
        data["source"],
        data["timestamp"],
        data["payload"],
        data["signature"],
    )
    if not isinstance(rid, str) or not _ID.fullmatch(rid):
        raise MalformedRecord("id must be 1-128 characters of [A-Za-z0-9_:-]")
    if not isinstance(source, str) or not _SOURCE.fullmatch(source):
        raise MalformedRecord("source must be 1-128 characters of [A-Za-z0-9_.@-]")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= _MAX_TS:
        raise MalformedRecord("timestamp must be integer Unix seconds")
    if not isinstance(payload, dict):
        raise MalformedRecord("payload must be a JSON object")
    if not isinstance(sig, dict) or not _SIG_REQUIRED <= sig.keys() <= _SIG_FIELDS:
        raise MalformedRecord("signature must be an object with 'alg', 'sig' and optional 'keyid'")
    alg, keyid = sig["alg"], sig.get("keyid", "")
    if not isinstance(alg, str) or alg not in ALGORITHMS:  # an object or array is unhashable
        raise MalformedRecord(f"signature.alg must be one of {sorted(ALGORITHMS)}, got {alg!r}")
    if not isinstance(keyid, str):
        raise MalformedRecord("signature.keyid must be a string")
    return Record(
        rid, source, ts, payload, alg, keyid.lower(), _b64(sig["sig"], "signature.sig"), plain
    )


def sign_asymmetric(
    record_id: str, source: str, timestamp: int, payload: dict[str, Any], signer: keys.Signer
) -> dict[str, Any]:
    """A signed record (as a dict) with an Ed25519 or ECDSA P-256 key."""
    unsigned = {"id": record_id, "source": source, "timestamp": timestamp, "payload": payload}
    alg = keys.algorithm_name(signer.public_key)
    if alg not in (ALG_ED25519, ALG_ECDSA_P256):
        raise ValueError(f"feedback records are signed with Ed25519 or ECDSA P-256, not {alg}")
    sig = signer.sign(canonical_bytes(unsigned))
    return {
        **unsigned,
        "signature": {
            "alg": alg,
            "keyid": signer.key_id,
            "sig": base64.b64encode(sig).decode("ascii"),
        },
    }


def sign_hmac(
    record_id: str, source: str, timestamp: int, payload: dict[str, Any], secret: bytes
) -> dict[str, Any]:
    """A signed record (as a dict) with HMAC-SHA256 over ``id.timestamp.body``."""
    unsigned = {"id": record_id, "source": source, "timestamp": timestamp, "payload": payload}
    mac = hmac.new(
        secret, hmac_message(record_id, timestamp, canonical_bytes(unsigned)), hashlib.sha256
    )
    return {
        **unsigned,
        "signature": {"alg": ALG_HMAC, "sig": base64.b64encode(mac.digest()).decode("ascii")},
    }


def hmac_valid(record: Record, secret: bytes) -> bool:
    """Whether an HMAC record's tag is right (constant-time comparison)."""
    expected = hmac.new(secret, record.message(), hashlib.sha256).digest()
    return hmac.compare_digest(expected, record.sig)


def decode_secret(value: str) -> bytes:
    """A shared secret from its environment value: ``whsec_<base64>`` (Standard Webhooks) or text.

    Raises:
        ValueError: a ``whsec_`` value that is not base64, or a secret shorter than 16 bytes.
    """
    if value.startswith("whsec_"):
        try:
            secret = base64.b64decode(value[6:], validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError("a whsec_ secret must be base64 after the prefix") from e
    else:
        secret = value.encode("utf-8")
    if len(secret) < 16:
        raise ValueError("an HMAC secret needs at least 16 bytes (128 bits)")
    return secret
