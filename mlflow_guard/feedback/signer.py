"""Source side: :class:`FeedbackSigner` turns feedback payloads into signed records."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from mlflow_guard.core import feedback_records as fr
from mlflow_guard.core import keys
from mlflow_guard.core.errors import KeyMaterialError, UsageError


class FeedbackSigner:
    """Signs feedback records for one source.

    Args:
        source_id: the source's name in the policy (its key id under ``feedback.sources``, or
            its ``feedback.hmac_sources`` id).
        key: a private key (Ed25519 or ECDSA P-256), a :class:`~mlflow_guard.core.keys.Signer`,
            a PEM private key path, or the HMAC secret as bytes.

    Example:
        >>> signer = FeedbackSigner("checkout", "keys/checkout.key")  # doctest: +SKIP
        >>> line = signer.sign_line({"prediction_id": "p-1", "label": "fraud"})  # doctest: +SKIP
    """

    def __init__(
        self, source_id: str, key: keys.PrivateKey | keys.Signer | bytes | str | os.PathLike[str]
    ) -> None:
        self.source_id = source_id
        self._secret: bytes | None = None
        self._signer: keys.Signer | None = None
        if isinstance(key, bytes):
            if len(key) < 16:
                raise KeyMaterialError("an HMAC secret needs at least 16 bytes (128 bits)")
            self._secret = key
        elif isinstance(key, keys.Signer):
            self._signer = key
        elif isinstance(key, str | os.PathLike):
            self._signer = keys.Signer(keys.load_private_key(key))
        else:
            self._signer = keys.Signer(key)
        if self._signer is not None:
            alg = keys.algorithm_name(self._signer.public_key)
            if alg not in (fr.ALG_ED25519, fr.ALG_ECDSA_P256):
                raise KeyMaterialError(
                    f"feedback records are signed with Ed25519 or ECDSA P-256, not {alg}",
                    hint="generate a key with `mlflow-guard keys generate --purpose feedback`",
                )

    @classmethod
    def from_env(cls, source_id: str, env_var: str) -> FeedbackSigner:
        """An HMAC signer whose secret is in ``env_var`` (``whsec_<base64>`` or text).

        Raises:
            KeyMaterialError: the variable is unset or the secret is too short.
        """
        value = os.environ.get(env_var)
        if not value:
            raise KeyMaterialError(f"${env_var} is not set", hint=f"export {env_var}=whsec_...")
        try:
            return cls(source_id, fr.decode_secret(value))
        except ValueError as e:
            raise KeyMaterialError(f"${env_var}: {e}") from e

    def sign(
        self,
        payload: dict[str, Any],
        *,
        record_id: str | None = None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """A signed record (dict) for ``payload`` with a fresh id and the current time.

        Raises:
            UsageError: the payload is not a JSON object that RFC 8785 can canonicalize.
        """
        if not isinstance(payload, dict):
            raise UsageError("a feedback payload must be a JSON object (dict)")
        rid = record_id or uuid.uuid4().hex
        ts = int(time.time()) if timestamp is None else timestamp
        try:
            if self._secret is not None:
                return fr.sign_hmac(rid, self.source_id, ts, payload, self._secret)
            assert self._signer is not None
            return fr.sign_asymmetric(rid, self.source_id, ts, payload, self._signer)
        except fr.MalformedRecord as e:
            raise UsageError(f"payload cannot be signed: {e}") from e

    def sign_line(self, payload: dict[str, Any], **kwargs: Any) -> bytes:
        """A signed record as one JSONL line (compact JSON, no newline)."""
        return json.dumps(self.sign(payload, **kwargs), separators=(",", ":")).encode("utf-8")
