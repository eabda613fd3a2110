"""Bearer-token authentication for the serving guard, revocation-exact with a verified cache.

The first request with a token verifies it in the guard store (``verify_token``: sha256 lookup,
constant-time compare, expiry, revocation) and remembers ``sha256(secret) → (user, revision)``.
Later requests with that token reuse the entry, but the store's revision counter (bumped by
every token create/revoke) is read *while the prediction runs*: no response leaves the server
before that read confirms the revision is unchanged. When it changed, the cache is dropped and
the token re-verified; a revoked token then gets 401 instead of the prediction. So a revocation
takes effect on the next request, and the database round trip is off the critical path.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

TokenCheck = Callable[[str], Any]
MAX_ENTRIES = 10_000


@dataclass
class Authenticated:
    """An authenticated caller; ``confirm()`` must return ``True`` before anything is sent.

    Attributes:
        user: the token's user (the client identity for limits and budgets).
        confirm: re-check against the store's current revision; raises on store failure.
    """

    user: str
    confirm: Callable[[], Awaitable[bool]]


async def _confirmed() -> bool:
    return True


class TokenAuth:
    """Verifies bearer tokens against the guard store (thread-safe for one event loop).

    Args:
        verify_token: ``secret -> TokenInfo | None``; raises when the store cannot answer.
        revision: the store's revision counter; ``None`` disables the cache (every request is
            verified in full before the app runs).
        max_entries: cache size bound (cleared when reached).
        inline: query the store on the event loop instead of a worker thread — for SQLite,
            whose reads (~0.1 ms) cost less than a thread hand-off on a busy machine; keep
            ``False`` for a networked database.
    """

    def __init__(
        self,
        verify_token: TokenCheck,
        revision: Callable[[], int] | None = None,
        max_entries: int = MAX_ENTRIES,
        *,
        inline: bool = False,
    ) -> None:
        self._inline = inline
        self._verify = verify_token
        self._revision = revision
        self._max = max_entries
        self._cache: dict[str, tuple[Any, int]] = {}

    async def authenticate(self, secret: str) -> Authenticated | None:
        """The caller of ``secret``, or ``None`` (invalid, expired or revoked).

        Raises:
            Exception: whatever the store raised (the caller answers 503: fail closed).
        """
        key = hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()
        hit = self._cache.get(key)
        if hit is not None and hit[0].active():
            info, rev = hit
            read = self._revision
            assert read is not None
            pending = (
                None if self._inline else asyncio.ensure_future(anyio.to_thread.run_sync(read))
            )

            async def confirm() -> bool:
                current = read() if pending is None else await pending
                if current == rev:
                    return True
                self._cache.clear()
                fresh = await self._full(secret, key)
                return fresh is not None and fresh.user == info.user

            return Authenticated(str(info.user), confirm)
        self._cache.pop(key, None)
        info = await self._full(secret, key)
        return Authenticated(str(info.user), _confirmed) if info is not None else None

    async def _full(self, secret: str, key: str) -> Any:
        revision = self._revision

        def work() -> tuple[int | None, Any]:
            rev = revision() if revision is not None else None  # read before: a later revoke
            return rev, self._verify(secret)  # bumps it and invalidates this entry

        rev, info = work() if self._inline else await anyio.to_thread.run_sync(work)
        if info is not None and rev is not None:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[key] = (info, rev)
        return info
