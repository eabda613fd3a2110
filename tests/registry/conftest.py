"""Fixtures for the registry server tests: a real guard server with signing/approval keys."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from mlflow_guard.core import keys
from tests.server._server import ADMIN_PASSWORD, Server, start_guard

USERS = {
    "alice": "alice-Passw0rd-1",
    "bob": "bob-Passw0rd-1",
    "carol": "carol-Passw0rd-1",
    "dave": "dave-Passw0rd-1",
    "mallory": "mallory-Passw0rd-1",
}
KEY_NAMES = ("ci", "rogue", "bob", "carol", "dave")

POLICY = """\
version: 1
keys:
  - {{id: ci, public_key: keys/ci.pub, purposes: [model]}}
  - {{id: bob, public_key: keys/bob.pub, purposes: [approval]}}
  - {{id: carol, public_key: keys/carol.pub, purposes: [approval]}}
  - {{id: dave, public_key: keys/dave.pub, purposes: [approval]}}
revoked: [dave]
roles: {{data-scientist: [alice, mallory], reviewer: [bob, carol, dave], platform: [admin]}}
access:
  - {{role: data-scientist, allow: [read, log, register, promote], experiments: "*", models: "*"}}
  - {{role: reviewer, allow: [read, log, register, approve, promote], experiments: "*",
     models: "*"}}
  - {{role: platform, allow: [read, log, register, approve, promote, admin], experiments: "*",
     models: "*"}}
registry:
  require_signature: true
  scan_model_files: true
  protected:
    - alias: production
      approvals: 2
      approver_roles: [reviewer]
      separation_of_duties: true
      approval_ttl: 7d
      gates: {{metrics: {{accuracy: ">= 0.9"}}}}
    - stage: Production
      approvals: 2
      approver_roles: [reviewer]
      gates: {{metrics: {{accuracy: ">= 0.9"}}}}
    - tag: release
      approvals: 1
      approver_roles: [reviewer]
storage: {{database_uri: "{guard_db}"}}
"""


@dataclass
class Env:
    """A running guard server and the key material of the test."""

    server: Server
    root: Path
    signers: dict[str, keys.Signer]

    @property
    def url(self) -> str:
        return self.server.url


def write_keys(root: Path) -> dict[str, keys.Signer]:
    """Generate the test's key pairs (never committed); public halves under ``root/keys``."""
    (root / "keys").mkdir(parents=True, exist_ok=True)
    signers = {}
    for name in KEY_NAMES:
        priv = keys.generate()
        (root / "keys" / f"{name}.pub").write_bytes(keys.public_pem(priv.public_key()))
        signers[name] = keys.Signer(priv)
    return signers


def start_registry_server(root: Path, guard_db: str | None = None, **kw: Any) -> Server:
    """Start a guard server with the registry policy in ``root`` (keys already written)."""
    db = guard_db or f"sqlite:///{root}/guard.db"
    return start_guard(root, guard_db=db, policy_text=POLICY.format(guard_db=db), **kw)


def create_users(url: str) -> None:
    """Create the test users through the guard REST API as the admin."""
    for user, pw in USERS.items():
        r = requests.post(
            f"{url}/api/2.0/mlflow-guard/users/create",
            json={"username": user, "password": pw},
            auth=("admin", ADMIN_PASSWORD),
            timeout=30,
        )
        assert r.status_code == 200, r.text


def auth(user: str) -> tuple[str, str]:
    """Basic-auth credentials of a test user."""
    return (user, ADMIN_PASSWORD if user == "admin" else USERS[user])


@contextmanager
def running_registry(root: Path) -> Iterator[Env]:
    """A guard server with the registry policy in ``root`` (fresh keys, the test users)."""
    signers = write_keys(root)
    server = start_registry_server(root)
    try:
        create_users(server.url)
        yield Env(server, root, signers)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def reg_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One guard server (SQLite, 2 workers) for the session, with alice, bob, carol, mallory."""
    with running_registry(tmp_path_factory.mktemp("registry-server")) as env:
        yield env


def client_as(env: Env, user: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An MLflow client authenticated as ``user``."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", auth(user)[1])
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return mlflow.MlflowClient(env.url, env.url)


@pytest.fixture(autouse=True)
def _no_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
