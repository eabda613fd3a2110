"""App factory for ``mlflow server --app-name guard`` (entry point ``mlflow.app: guard``).

Under uvicorn (MLflow's default) it returns an ASGI app: MLflow's FastAPI app (built with
``create_fastapi_app``) wrapped by :class:`~mlflow_guard.server.asgi_layer.GuardASGI`; under
gunicorn or waitress it returns MLflow's Flask app. Guard's hooks are installed on the Flask app
in both cases, so Flask routes are enforced in Flask and FastAPI-native routes in the wrapper.
Configuration is read here, when the factory runs, never at import time.
"""

from __future__ import annotations

import logging
import os
from typing import Any

_log = logging.getLogger(__name__)
_INSTALLED: dict[int, Any] = {}
BOOTSTRAPPED_ENV = "MLFLOW_GUARD_BOOTSTRAPPED"


def open_users(uri: str) -> Any:
    """MLflow's basic-auth user store at ``uri``, initialised (migrations run)."""
    import importlib.util

    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    if uri.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        uri = "postgresql+psycopg2://" + uri[len("postgresql://") :]  # MLflow defaults to psycopg 3
    users = SqlAlchemyStore()
    users.init_db(uri)  # type: ignore[no-untyped-call]
    return users


def open_store(config: Any) -> Any:
    """The guard store of the configuration, migrated."""
    from mlflow_guard.store import GuardStore

    if os.environ.get("MLFLOW_GUARD_DATABASE_URI"):
        store = GuardStore(config.guard_database_uri)
    else:
        store = GuardStore.from_policy(config.policy)
    store.migrate()
    return store


def bootstrap_admin(users: Any, *, required: bool) -> str | None:
    """Create MLflow's configured admin user if missing (``MLFLOW_AUTH_ADMIN_*`` or the ini).

    Returns the admin name when one is configured.

    Raises:
        PolicyError: ``required`` and the admin is missing with no password configured.
    """
    from mlflow.server.auth.config import read_auth_config

    from mlflow_guard.core.errors import PolicyError

    cfg = read_auth_config()
    name, password = cfg.admin_username, cfg.admin_password
    if not name:
        return None
    if users.has_user(name):
        return name
    if not password:
        if required:
            raise PolicyError(
                f"admin user {name!r} does not exist and no password is configured",
                hint="export MLFLOW_AUTH_ADMIN_PASSWORD=... (used once, to create the admin)",
            )
        return None
    try:
        users.create_user(name, password, is_admin=True)
    except Exception:
        if not users.has_user(name):
            raise
    return name


def create_app(app: Any = None) -> Any:
    """Build the guard server app (see the module docstring)."""
    from mlflow.server import app as mlflow_flask_app

    from mlflow_guard.server import asgi_layer, flask_layer, guard_api
    from mlflow_guard.server.config import load_config
    from mlflow_guard.server.engine import Guard
    from mlflow_guard.server.policy_watch import PolicyWatch

    flask_app = app if app is not None else mlflow_flask_app
    cached = _INSTALLED.get(id(flask_app))
    if cached is None:
        config = load_config()
        store = open_store(config)
        users = open_users(config.users_database_uri)
        if not os.environ.get(BOOTSTRAPPED_ENV):
            bootstrap_admin(users, required=False)
        watch = PolicyWatch(config.policy, config.policy_path)
        guard = Guard(watch, store, users, config.auth_cache_seconds)
        flask_layer.install(flask_app, guard, config.max_json_bytes)
        guard_api.install(flask_app, guard, config.guard_database_uri)
        cached = _INSTALLED[id(flask_app)] = (guard, config.max_json_bytes)
    asgi_layer.set_nodelay_on_listeners()
    if os.environ.get("_MLFLOW_SGI_NAME", "uvicorn") in ("gunicorn", "waitress"):
        return flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    engine, max_body = cached
    return asgi_layer.GuardASGI(create_fastapi_app(flask_app), engine, max_body)
