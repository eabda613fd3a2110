"""Authentication: MLflow basic-auth users and guard API tokens, verified once and cached.

``Authorization: Basic`` is checked against MLflow's own basic-auth user store (password hashes,
admin flag); ``Authorization: Bearer`` against the guard store's hashed API tokens. A verified
credential is cached under the sha256 of the header value together with the guard store's
revision counter; every request reads the counter (one small query) and a changed counter
drops the cache, so a revoked token, a changed password or a deleted user stops working at once
on every replica sharing the database. The cache never holds a credential itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from mlflow_guard.core.access import Principal


class TokenVerifier(Protocol):
    """The slice of :class:`mlflow_guard.store.GuardStore` authentication needs."""

    def revision(self) -> int:
        """Counter bumped on every token/permission/user change."""

    def verify_token(self, secret: str) -> Any:
        """Token info (``user``, ``token_id``) or ``None``."""


class AuthFailure(Exception):
    """No usable credential: the request gets 401 with this message."""


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    revision: int
    expires: float


class Authenticator:
    """Verifies credentials and caches successes per revision.

    Args:
        users: an initialised ``mlflow.server.auth.sqlalchemy_store.SqlAlchemyStore``.
        tokens: the guard store.
        max_age_seconds: a cached success is re-verified after this long regardless.
    """

    def __init__(self, users: Any, tokens: TokenVerifier, max_age_seconds: int = 300) -> None:
        self._users = users
        self._tokens = tokens
        self._max_age = max_age_seconds
        self._cache: dict[bytes, _Entry] = {}
        self._revision = -1
        self._lock = threading.Lock()
        self._tls = threading.local()

    def request_revision(self) -> int | None:
        """The revision read by this thread's last :meth:`authenticate` (for other caches)."""
        rev: int | None = getattr(self._tls, "revision", None)
        return rev

    def authenticate(self, header: str | None) -> Principal:
        """Return the caller for an ``Authorization`` header value.

        Raises:
            AuthFailure: missing, malformed or wrong credential.
            Exception: the stores failed (the caller answers 503, never allows).
        """
        if not header:
            raise AuthFailure(
                "authentication required: send HTTP Basic credentials of an MLflow user "
                "or 'Authorization: Bearer <token>' (create one with `mlflow-guard tokens create`)"
            )
        self._tls.revision = None
        rev = self._tokens.revision()
        self._tls.revision = rev
        digest = hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest()
        now = time.monotonic()
        with self._lock:
            if rev != self._revision:
                self._cache.clear()
                self._revision = rev
            hit = self._cache.get(digest)
        if hit is not None and hit.revision == rev and hit.expires > now:
            return hit.principal
        principal, expires_at = self._verify(header)
        ttl = float(self._max_age)
        if expires_at is not None:
            ttl = min(ttl, (expires_at - datetime.now(UTC)).total_seconds())
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            if self._revision == rev and ttl > 0:
                self._cache[digest] = _Entry(principal, rev, now + ttl)
        return principal

    def invalidate(self) -> None:
        """Drop every cached credential of this process."""
        with self._lock:
            self._cache.clear()

    def _verify(self, header: str) -> tuple[Principal, datetime | None]:
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            if not value:
                raise AuthFailure("empty bearer token")
            info = self._tokens.verify_token(value)
            if info is None:
                raise AuthFailure(
                    "bearer token unknown, expired or revoked; create a new one with "
                    "`mlflow-guard tokens create`"
                )
            user = str(info.user)
            expires = info.expires_at
            if expires is not None and expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            principal = Principal(user, is_admin=self._is_admin(user), via=f"token:{info.token_id}")
            return principal, expires
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as e:
                raise AuthFailure(
                    "malformed Basic credentials (expected base64 user:password)"
                ) from e
            user, sep, password = decoded.partition(":")
            if not sep or not user:
                raise AuthFailure("malformed Basic credentials (expected user:password)")
            if not self._users.authenticate_user(user, password):
                raise AuthFailure("wrong user name or password")
            return Principal(user, is_admin=self._is_admin(user), via="basic"), None
        raise AuthFailure(f"unsupported authorization scheme {scheme!r}; use Basic or Bearer")

    def _is_admin(self, user: str) -> bool:
        if not self._users.has_user(user):
            return False
        return bool(self._users.get_user(user).is_admin)
