"""Find the guard database for command-line tools: ``--database-uri`` or the policy's storage."""

from __future__ import annotations

from mlflow_guard.core.policy import Policy, load_policy
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
