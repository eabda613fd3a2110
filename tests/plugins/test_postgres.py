"""``guard+postgresql://``: the embedded guarded stores over PostgreSQL (a fresh database)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from tests._pg import admin_connection
from tests.plugins.conftest import Workspace, log_sklearn

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
PG = os.environ.get("MLFLOW_GUARD_TEST_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A throw-away database; skipped when PostgreSQL is unreachable (failed when CI=true)."""
    admin = admin_connection(f"{PG}/postgres")
    name = f"guard_h4_{secrets.token_hex(4)}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG}/{name}"
    finally:
        import contextlib

        import mlflow.tracking._model_registry.utils as reg
        import mlflow.tracking._tracking_service.utils as trk

        for get in (trk._get_store, reg._get_store):
            with contextlib.suppress(Exception):
                get(f"guard+{PG}/{name}").engine.dispose()
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def test_guard_postgresql_gate(
    in_workspace: Workspace, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    uri = f"guard+{pg_database}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient()
    assert isinstance(client._get_registry_client().store, SqlAlchemyStore)
    log_sklearn("pg-ok")
    (mv,) = client.search_model_versions("name='pg-ok'")
    assert mv.tags["mlflow_guard.signer"] == "ci"
    monkeypatch.delenv("MLFLOW_GUARD_SIGNING_KEY")
    with pytest.raises(MlflowException, match="MLFLOW_GUARD_SIGNING_KEY"):
        log_sklearn("pg-unsigned")
    assert client.search_model_versions("name='pg-unsigned'") == []
