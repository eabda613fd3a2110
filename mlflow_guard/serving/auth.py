"""Bearer-token authentication for the serving guard, revocation-exact with a verified cache.

The first request with a token verifies it in the guard store (``verify_token``: sha256 lookup,
constant-time compare, expiry, revocation) and remembers ``sha256(secret) → (user, revision)``.
Later requests with that token reuse the entry, but the store's revision counter (bumped by
every token create/revoke) is read *while the prediction runs*: no response leaves the server
before that read confirms the revision is unchanged. When it changed, the cache is dropped and
the token re-verified; a revoked token then gets 401 instead of the prediction. So a revocation
takes effect on the next request, and the database round trip is off the critical path.

The revision read is one indexed single-row ``SELECT`` sent through a DBAPI connection
(:class:`RevisionReader`, ≈3–8 µs on SQLite) instead of a SQLAlchemy Core execution
(≈85 µs): it runs on every request, the full token check only on a cache miss or after a
change.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine, select

from mlflow_guard.store import engine as _engine
from mlflow_guard.store import tables as _tables
from mlflow_guard.store.errors import StoreError

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


class RevisionReader:
    """Reads the guard store's revision counter with one raw SQL statement per call.

    Each call runs the pre-compiled ``SELECT revision FROM guard_revision WHERE id = 1``
    through a DBAPI connection of the engine's pool and reads the result to the end, so no
    read transaction stays open (SQLite connections are in autocommit mode: every read sees
    the last committed revision). By default the connection is checked out and returned per
    call (thread-safe, any database). With ``hold=True`` one connection is kept for the
    reader's lifetime behind a lock (≈3 µs instead of ≈8 µs on SQLite; meant for the
    single-threaded inline mode of :class:`TokenAuth`). A failed read discards the
    connection and raises :class:`StoreError`: the caller answers 503 (fail closed); the
    next call connects afresh.

    Args:
        engine: the guard database's engine (:func:`mlflow_guard.store.engine.make_engine`).
        hold: keep one connection instead of a pool checkout per call.
    """

    def __init__(self, engine: Engine, *, hold: bool = False) -> None:
        self._engine = engine
        self._hold = hold
        self._held: Any = None
        self._autocommit = engine.dialect.name == "postgresql"
        self._lock = threading.Lock()
        stmt = select(_tables.revision.c.revision).where(_tables.revision.c.id == 1)
        self._sql = str(
            stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
        )
        self._where = engine.url.render_as_string(hide_password=True)

    @classmethod
    def for_uri(cls, database_uri: str, *, hold: bool = False) -> RevisionReader:
        """A reader with its own engine (pool) for ``database_uri``; connects lazily.

        Raises:
            StoreError: the URI is invalid or names an unsupported database.
        """
        return cls(_engine.make_engine(_engine.parse_uri(database_uri)), hold=hold)

    def __call__(self) -> int:
        """The current revision.

        Raises:
            StoreError: the database cannot be read or has no revision row.
        """
        if not self._hold:
            conn = self._connect()
            try:
                rows = self._read(conn)
            finally:
                conn.close()
        else:
            with self._lock:
                if self._held is None:
                    self._held = self._connect()
                try:
                    rows = self._read(self._held)
                except StoreError:
                    self._held.close()
                    self._held = None
                    raise
        if len(rows) != 1:
            raise StoreError(
                f"guard database {self._where} has no revision row", hint="run migrate()"
            )
        return int(rows[0][0])

    def _connect(self) -> Any:
        try:
            conn: Any = self._engine.raw_connection()
            if self._autocommit:  # PostgreSQL: no transaction stays open between reads
                conn.driver_connection.autocommit = True
            return conn
        except Exception as e:
            raise self._fail(e) from e

    def _read(self, conn: Any) -> list[Any]:
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(self._sql)
                return list(cursor.fetchall())
            finally:
                cursor.close()
        except Exception as e:
            conn.invalidate(e)
            raise self._fail(e) from e

    def _fail(self, e: BaseException) -> StoreError:
        return StoreError(
            f"guard database {self._where}: cannot read the revision",
            details=[f"{type(e).__name__}: {e}"],
            hint="check that the guard database is reachable and migrated",
        )

    def dispose(self) -> None:
        """Close the held and the pooled connections."""
        with self._lock:
            if self._held is not None:
                self._held.close()
                self._held = None
        self._engine.dispose()


class TokenAuth:
    """Verifies bearer tokens against the guard store (thread-safe for one event loop).

    Args:
        verify_token: ``secret -> TokenInfo | None``; raises when the store cannot answer.
        revision: the store's revision counter; ``None`` disables the cache (every request is
            verified in full before the app runs).
        max_entries: cache size bound (cleared when reached).
        inline: query the store on the event loop instead of a worker thread — for SQLite,
            whose reads (a few µs through :class:`RevisionReader`, ~0.1 ms for a full token
            check) cost less than a thread hand-off; keep ``False`` for a networked database.
        recheck: freshness window in seconds (default ``0``: the revision is read for every
            request, so a revocation takes effect at the next request). With ``recheck > 0``
            a revision read at time *t* is trusted until *t + recheck*: cached tokens are
            accepted without a read in that window, so a revocation takes effect within
            ``recheck`` seconds (and a database outage shows as 503 only once the window of
            the last good read has passed). An explicit trade-off for networked databases.
        clock: monotonic time source (tests).
    """

    def __init__(
        self,
        verify_token: TokenCheck,
        revision: Callable[[], int] | None = None,
        max_entries: int = MAX_ENTRIES,
        *,
        inline: bool = False,
        recheck: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if recheck < 0:
            raise ValueError(f"recheck must be >= 0 seconds, got {recheck}")
        self._inline = inline
        self._verify = verify_token
        self._revision = revision
        self._max = max_entries
        self._cache: dict[str, tuple[Any, int]] = {}
        self._recheck = recheck
        self._clock = clock
        self._fresh: tuple[int, float] | None = None  # (revision, trusted until)

    def _read(self) -> int:
        """Read the revision; with a window, remember it (timed from before the read)."""
        read = self._revision
        assert read is not None
        if self._recheck <= 0:
            return read()
        started = self._clock()
        value = read()
        self._fresh = (value, started + self._recheck)
        return value

    async def authenticate(self, secret: str) -> Authenticated | None:
        """The caller of ``secret``, or ``None`` (invalid, expired or revoked).

        Raises:
            Exception: whatever the store raised (the caller answers 503: fail closed).
        """
        key = hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()
        hit = self._cache.get(key)
        if hit is not None and hit[0].active():
            info, rev = hit
            fresh = self._fresh
            if fresh is not None and fresh[0] == rev and self._clock() < fresh[1]:
                return Authenticated(str(info.user), _confirmed)  # inside the window
            read = self._read
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
        cached = self._revision is not None

        def work() -> tuple[int | None, Any]:
            rev = self._read() if cached else None  # read before: a later revoke
            return rev, self._verify(secret)  # bumps it and invalidates this entry

        rev, info = work() if self._inline else await anyio.to_thread.run_sync(work)
        if info is not None and rev is not None:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[key] = (info, rev)
        return info
