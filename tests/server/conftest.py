"""Fixtures for the guard server tests: one real guard server per session (SQLite), users."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.server._server import ADMIN_PASSWORD, PASSWORDS, Server, start_guard

ADMIN = ("admin", ADMIN_PASSWORD)


def create_users(url: str) -> None:
    """Create alice, bob and mallory through the guard REST API as the admin."""
    for user, pw in PASSWORDS.items():
        r = requests.post(
            f"{url}/api/2.0/mlflow-guard/users/create",
            json={"username": user, "password": pw},
            auth=ADMIN,
            timeout=30,
        )
        assert r.status_code == 200, r.text


@pytest.fixture(scope="session")
def guard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``mlflow-guard server`` (2 workers, SQLite) with users alice, bob, mallory."""
    server = start_guard(tmp_path_factory.mktemp("guard-server"))
    try:
        create_users(server.url)
        yield server
    finally:
        server.stop()


@pytest.fixture
def as_user(
    guard_server: Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], Any]]:
    """Switch the MLflow client (tracking URI and basic-auth env) to a user."""
    import mlflow

    def switch(user: str) -> Any:
        pw = ADMIN_PASSWORD if user == "admin" else PASSWORDS[user]
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", pw)
        monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        mlflow.set_tracking_uri(guard_server.url)
        mlflow.set_registry_uri(guard_server.url)
        return mlflow.MlflowClient(guard_server.url, guard_server.url)

    yield switch
    mlflow.set_tracking_uri(None)
    os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
