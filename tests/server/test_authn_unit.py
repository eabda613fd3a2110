"""Authenticator with the real MLflow user store and the real guard store (SQLite)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlflow_guard.server.app import open_users
from mlflow_guard.server.authn import Authenticator, AuthFailure
from mlflow_guard.store import GuardStore


def basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Any, GuardStore]:
    users = open_users(f"sqlite:///{tmp_path}/users.db")
    users.create_user("alice", "alice-Passw0rd-1", False)
    users.create_user("root", "root-Passw0rd-1", True)
    store = GuardStore(f"sqlite:///{tmp_path}/guard.db")
    store.migrate()
    return users, store


def test_basic_and_bearer(stores: tuple[Any, GuardStore]) -> None:
    users, store = stores
    a = Authenticator(users, store)
    p = a.authenticate(basic("root", "root-Passw0rd-1"))
    assert (p.user, p.is_admin, p.via) == ("root", True, "basic")
    token_id, secret = store.create_token("alice", None, "t")
    p = a.authenticate(f"Bearer {secret}")
    assert (p.user, p.is_admin, p.via) == ("alice", False, f"token:{token_id}")


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (None, "authentication required"),
        ("", "authentication required"),
        ("Digest abc", "unsupported authorization scheme"),
        ("Basic !!!", "malformed Basic"),
        ("Basic " + base64.b64encode(b"nocolon").decode(), "malformed Basic"),
        ("Bearer ", "empty bearer token"),
        ("Bearer mgt_nope", "unknown, expired or revoked"),
    ],
)
def test_bad_credentials(stores: tuple[Any, GuardStore], header: str | None, match: str) -> None:
    users, store = stores
    with pytest.raises(AuthFailure, match=match):
        Authenticator(users, store).authenticate(header)


def test_cache_is_dropped_when_the_revision_changes(stores: tuple[Any, GuardStore]) -> None:
    users, store = stores
    a = Authenticator(users, store)
    token_id, secret = store.create_token("alice", None, "t")
    assert a.authenticate(f"Bearer {secret}").user == "alice"
    assert a.authenticate(f"Bearer {secret}").user == "alice"  # cached
    store.revoke_token(token_id)
    with pytest.raises(AuthFailure):
        a.authenticate(f"Bearer {secret}")
    cred = basic("alice", "alice-Passw0rd-1")
    assert a.authenticate(cred).user == "alice"
    users.update_user("alice", password="alice-New-Passw0rd-2")
    assert a.authenticate(cred).user == "alice"  # out-of-band change: revision not bumped
    store.bump_revision()  # what the guard API does on every user change
    with pytest.raises(AuthFailure, match="wrong user name or password"):
        a.authenticate(cred)


def test_cached_token_expires(stores: tuple[Any, GuardStore]) -> None:
    users, store = stores
    a = Authenticator(users, store)
    _, secret = store.create_token("alice", datetime.now(UTC) + timedelta(seconds=1), "t")
    assert a.authenticate(f"Bearer {secret}").user == "alice"
    import time

    time.sleep(1.2)
    with pytest.raises(AuthFailure):
        a.authenticate(f"Bearer {secret}")
