"""The log-time signing key, from ``MLFLOW_GUARD_SIGNING_KEY`` (+ ``…_PASSPHRASE``)."""

from __future__ import annotations

import os

from mlflow_guard.core import keys

KEY_ENV = "MLFLOW_GUARD_SIGNING_KEY"
PASSPHRASE_ENV = "MLFLOW_GUARD_SIGNING_KEY_PASSPHRASE"  # noqa: S105 - a variable name


def configured_signer() -> keys.Signer | None:
    """The configured signer, or ``None`` when no key is configured.

    Raises:
        KeyMaterialError: the key file is missing, unreadable, or the passphrase is wrong.
    """
    path = os.environ.get(KEY_ENV, "").strip()
    if not path:
        return None
    pw = os.environ.get(PASSPHRASE_ENV)
    return keys.Signer(keys.load_private_key(path, pw.encode() if pw else None))
