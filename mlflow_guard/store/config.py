"""Configuration from the policy: the guard database for tools, the audit checkpoint key."""

from __future__ import annotations

import os

from mlflow_guard.core import keys
from mlflow_guard.core.errors import KeyMaterialError, PolicyError
from mlflow_guard.core.policy import Policy, Purpose, load_policy
from mlflow_guard.store.guard_store import GuardStore


def open_store(
    policy_path: str | None, database_uri: str | None
) -> tuple[GuardStore, Policy | None]:
    """The store named by ``database_uri``, else by ``storage.database_uri`` of the policy.

    The policy is loaded when ``policy_path`` is given, or when no URI is given (then found via
    ``$MLFLOW_GUARD_POLICY`` or ``./guard.yaml``).

    Raises:
        PolicyError: no URI and no policy found, or an invalid policy.
        StoreError: invalid database URI.
    """
    policy = load_policy(policy_path) if policy_path or not database_uri else None
    uri = database_uri or (policy.storage.database_uri if policy else "")
    return GuardStore(uri), policy


def audit_signer(policy: Policy) -> keys.Signer | None:
    """The signer of ``storage.audit_key`` (relative to the policy's folder), if configured.

    Raises:
        KeyMaterialError: the key cannot be read, or its passphrase variable is not set.
        PolicyError: no key of purpose ``audit`` in the policy matches it (the checkpoints it
            signs could not be verified with this policy).
    """
    s = policy.storage
    if s.audit_key is None:
        return None
    path = s.audit_key if s.audit_key.is_absolute() else policy.base_dir / s.audit_key
    pw = None
    if s.audit_key_passphrase_env:
        value = os.environ.get(s.audit_key_passphrase_env)
        if value is None:
            raise KeyMaterialError(
                f"passphrase variable ${s.audit_key_passphrase_env} is not set",
                hint="export it before starting the server, or use an unencrypted audit key",
            )
        pw = value.encode("utf-8")
    signer = keys.Signer(keys.load_private_key(path, pw))
    trusted = [
        keys.key_id(keys.load_public_key(policy.key_path(k)))
        for k in policy.keys
        if Purpose.AUDIT in k.purposes
    ]
    if signer.key_id not in trusted:
        raise PolicyError(
            "storage.audit_key has no matching public key of purpose 'audit' under 'keys'",
            details=[
                f"audit key id {signer.key_id}",
                f"audit keys in the policy: {trusted or 'none'}",
            ],
            hint="add {id: audit, public_key: <its .pub>, purposes: [audit]} to 'keys', "
            "or it signs checkpoints that `mlflow-guard audit verify` cannot check",
        )
    return signer
