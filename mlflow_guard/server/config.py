"""Server configuration, read when the app factory runs (never at import time).

Sources: the policy (``$MLFLOW_GUARD_POLICY`` or ``./guard.yaml``), MLflow's basic-auth
configuration (``$MLFLOW_AUTH_CONFIG_PATH``: where users and password hashes live, as for
``--app-name basic-auth``) and a few ``MLFLOW_GUARD_*`` limits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mlflow_guard.core.errors import PolicyError
from mlflow_guard.core.policy import Policy, find_policy, load_policy

ENV_MAX_JSON = "MLFLOW_GUARD_MAX_JSON_BYTES"
ENV_CACHE_TTL = "MLFLOW_GUARD_AUTH_CACHE_SECONDS"
ENV_USERS_DB = "MLFLOW_GUARD_USERS_DATABASE_URI"
ENV_GUARD_DB = "MLFLOW_GUARD_DATABASE_URI"


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise PolicyError(
            f"${name} must be an integer, got {raw!r}", hint=f"unset {name} or fix it"
        ) from e
    if value < 0:
        raise PolicyError(f"${name} must not be negative, got {value}", hint=f"fix {name}")
    return value


@dataclass(frozen=True)
class ServerConfig:
    """Everything the guard app needs to start.

    Attributes:
        policy: the loaded policy.
        policy_path: its file (watched: the server reloads it when it or a key file changes).
        guard_database_uri: guard state (tokens, audit, revision); the policy's
            ``storage.database_uri`` unless ``$MLFLOW_GUARD_DATABASE_URI`` overrides it.
        users_database_uri: MLflow basic-auth user store (users, password hashes, admin flag).
        max_json_bytes: largest JSON request body accepted (413 above).
        auth_cache_seconds: upper bound on how long a verified credential is reused even when
            the revision counter did not change (defence in depth).
    """

    policy: Policy
    policy_path: Path
    guard_database_uri: str
    users_database_uri: str
    max_json_bytes: int
    auth_cache_seconds: int


def users_database_uri() -> str:
    """The basic-auth user store URI: ``$MLFLOW_GUARD_USERS_DATABASE_URI`` or MLflow's ini."""
    explicit = os.environ.get(ENV_USERS_DB)
    if explicit:
        return explicit
    from mlflow.server.auth.config import read_auth_config

    return read_auth_config().database_uri


def load_config() -> ServerConfig:
    """Read the policy and limits. Raises :class:`PolicyError` on any problem."""
    path = find_policy(None)
    policy = load_policy(path)
    return ServerConfig(
        policy=policy,
        policy_path=path,
        guard_database_uri=os.environ.get(ENV_GUARD_DB) or policy.storage.database_uri,
        users_database_uri=users_database_uri(),
        max_json_bytes=_int_env(ENV_MAX_JSON, 16 * 1024 * 1024),
        auth_cache_seconds=_int_env(ENV_CACHE_TTL, 300),
    )
