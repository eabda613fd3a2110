"""API tokens: the secret format, its digest and :class:`TokenInfo`.

A token secret looks like ``mlg_<token_id>_<random>``: ``token_id`` is 16 hex characters (public,
shown by ``tokens list``, used to revoke), ``random`` is 32 bytes from :mod:`secrets` in
URL-safe base64. Only ``sha256(secret)`` is stored; the secret is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PREFIX = "mlg_"
MAX_SECRET_LEN = 256
_SECRET = re.compile(r"^mlg_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})\Z")


def new_secret() -> tuple[str, str]:
    """A fresh (token_id, secret) pair."""
    token_id = secrets.token_hex(8)
    return token_id, f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def parse_token_id(secret: str) -> str | None:
    """The token id inside a well-formed secret, else ``None``."""
    if not isinstance(secret, str) or len(secret) > MAX_SECRET_LEN:
        return None
    m = _SECRET.match(secret)
    return m.group(1) if m else None


def digest(secret: str) -> str:
    """Hex sha256 of the secret (what the database stores)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def aware(t: datetime | None) -> datetime | None:
    """Attach UTC to a naive datetime (SQLite returns naive values)."""
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TokenInfo:
    """What is known about a token (never the secret)."""

    token_id: str
    user: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    description: str = ""

    def active(self, at: datetime | None = None) -> bool:
        """Neither revoked nor expired at ``at`` (default: now)."""
        now = at or datetime.now(UTC)
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at

    def status(self, at: datetime | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.active(at) else "expired"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "token_id": self.token_id,
            "user": self.user,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "description": self.description,
            "status": self.status(),
        }
