"""The guard state store: revision counter, API tokens, the audit hash chain and its checkpoints.

Guard state lives only in this database (SQLite by default, PostgreSQL for several replicas),
never in a replica's memory. Every failure to read or write raises :class:`StoreError`; the
server answers 503 and denies.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Row, Select, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from mlflow_guard.core import audit as chain
from mlflow_guard.core import keys
from mlflow_guard.core.errors import KeyMaterialError, UsageError
from mlflow_guard.store import engine as _engine
from mlflow_guard.store import tables as t
from mlflow_guard.store import tokens as _tokens
from mlflow_guard.store.errors import StoreError
from mlflow_guard.store.tokens import TokenInfo

if TYPE_CHECKING:
    from mlflow_guard.core.policy import Policy

_T = TypeVar("_T")
MIGRATION_LOCK_KEY = 0x6D6C67756172  # "mlguar": pg_advisory_xact_lock key for migrations
AUDIT_BATCH = 1000


class GuardStore:
    """Guard state in one SQL database.

    Args:
        database_uri: ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``.
        checkpoint_signer: when set, :meth:`append_audit` writes a signed checkpoint every
            ``checkpoint_every`` entries and whenever ``checkpoint_interval`` has passed.
        checkpoint_every: entries between checkpoints (0: never by count).
        checkpoint_interval: longest time between checkpoints (``None``: never by time).

    Raises:
        StoreError: the URI is invalid or names an unsupported database. No connection is made.
    """

    def __init__(
        self,
        database_uri: str,
        *,
        checkpoint_signer: keys.Signer | None = None,
        checkpoint_every: int = 0,
        checkpoint_interval: timedelta | None = None,
    ) -> None:
        self._url = _engine.parse_uri(database_uri)
        self._engine = _engine.make_engine(self._url)
        self._signer = checkpoint_signer
        self._every = max(0, checkpoint_every)
        self._interval = checkpoint_interval
        self._last_checkpoint: datetime | None = None
        self._cp_lock = threading.Lock()

    @classmethod
    def from_policy(cls, policy: Policy) -> GuardStore:
        """Build the store from ``storage`` in the policy (database, audit key, checkpoints).

        Raises:
            StoreError: invalid database URI.
            KeyMaterialError: the audit key cannot be read.
        """
        s = policy.storage
        signer = None
        if s.audit_key is not None:
            path = s.audit_key if s.audit_key.is_absolute() else policy.base_dir / s.audit_key
            pw = None
            if s.audit_key_passphrase_env:
                value = os.environ.get(s.audit_key_passphrase_env)
                if value is None:
                    raise KeyMaterialError(
                        f"passphrase variable ${s.audit_key_passphrase_env} is not set",
                        hint="export it before starting the server, or use an unencrypted key",
                    )
                pw = value.encode("utf-8")
            signer = keys.Signer(keys.load_private_key(path, pw))
        return cls(
            s.database_uri,
            checkpoint_signer=signer,
            checkpoint_every=s.checkpoint_every,
            checkpoint_interval=s.checkpoint_interval,
        )

    @property
    def url(self) -> str:
        """The database URI with any password hidden."""
        return self._url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._url.get_backend_name()

    def dispose(self) -> None:
        """Close pooled connections."""
        self._engine.dispose()

    # -- plumbing ---------------------------------------------------------------------------

    def _fail(self, what: str, e: BaseException) -> StoreError:
        detail = str(getattr(e, "orig", None) or e).strip().splitlines()
        hint = "check that the guard database is reachable and writable"
        if "no such table" in str(e) or "does not exist" in str(e):
            hint = "the guard schema is missing: run the server once or `GuardStore.migrate()`"
        return StoreError(
            f"guard database {self.url}: cannot {what}",
            details=[f"{type(e).__name__}: {detail[0] if detail else ''}"],
            hint=hint,
        )

    def _run(self, what: str, fn: Callable[[Connection], _T], *, write: bool) -> _T:
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(**{_engine.WRITE: True})
                with conn.begin():
                    return fn(conn)
        except StoreError:
            raise
        except (SQLAlchemyError, OSError) as e:
            raise self._fail(what, e) from e

    # -- schema -----------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest version (idempotent; safe with replicas racing).

        PostgreSQL: a transaction-level advisory lock serializes concurrent callers; SQLite:
        ``BEGIN IMMEDIATE``. The migration runs in that same transaction.

        Raises:
            StoreError: the database cannot be reached or written.
        """
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))

        def _upgrade(conn: Connection) -> None:
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

        if self.dialect == "sqlite":
            self._sqlite_wal()
        self._run("migrate the schema", _upgrade, write=True)

    def _sqlite_wal(self) -> None:
        try:
            with self._engine.connect() as conn:
                raw = conn.connection.dbapi_connection
                assert raw is not None
                raw.execute("PRAGMA journal_mode=WAL")
        except (SQLAlchemyError, OSError) as e:
            raise self._fail("open the database", e) from e

    # -- revision counter -------------------------------------------------------------------

    def revision(self) -> int:
        """The revision counter (bumped on every token or permission change)."""

        def _read(conn: Connection) -> int:
            value = conn.execute(select(t.revision.c.revision).where(t.revision.c.id == 1)).scalar()
            if value is None:
                raise StoreError("guard database has no revision row", hint="run migrate()")
            return int(value)

        return self._run("read the revision", _read, write=False)

    def bump_revision(self) -> int:
        """Increment the revision counter; return the new value."""
        return self._run("bump the revision", _bump, write=True)

    # -- tokens -----------------------------------------------------------------------------

    def create_token(
        self, user: str, expires_at: datetime | None, description: str = ""
    ) -> tuple[str, str]:
        """Create an API token for ``user``; return ``(token_id, secret)``.

        The secret is shown once: only its sha256 is stored.

        Raises:
            UsageError: empty user, or an expiry in the past.
            StoreError: the database cannot be written.
        """
        if not user.strip():
            raise UsageError("a token needs a user name", hint="pass the MLflow user name")
        now = datetime.now(UTC)
        exp = _tokens.aware(expires_at)
        if exp is not None and exp <= now:
            raise UsageError(
                f"token expiry {exp.isoformat()} is in the past", hint="pass a future expiry"
            )
        token_id, secret = _tokens.new_secret()
        row = {
            "token_id": token_id,
            "user_name": user,
            "secret_sha256": _tokens.digest(secret),
            "created_at": now,
            "expires_at": exp,
            "revoked_at": None,
            "description": description,
        }

        def _create(conn: Connection) -> None:
            conn.execute(insert(t.tokens).values(**row))
            _bump(conn)

        self._run("create a token", _create, write=True)
        return token_id, secret

    def verify_token(self, secret: str) -> TokenInfo | None:
        """The token's info when ``secret`` is a valid, unexpired, unrevoked token, else ``None``.

        Raises:
            StoreError: the database cannot be read (the caller must deny, not treat as invalid).
        """
        token_id = _tokens.parse_token_id(secret)
        if token_id is None:
            return None
        found = self._run(
            "verify a token",
            lambda c: c.execute(
                select(t.tokens).where(t.tokens.c.token_id == token_id)
            ).one_or_none(),
            write=False,
        )
        if found is None:
            return None
        if not hmac.compare_digest(_tokens.digest(secret), str(found.secret_sha256)):
            return None
        info = _token_info(found._mapping)
        return info if info.active() else None

    def get_token(self, token_id: str) -> TokenInfo | None:
        """The token with this id (whatever its status), or ``None``."""
        found = self._run(
            "read a token",
            lambda c: c.execute(
                select(t.tokens).where(t.tokens.c.token_id == token_id)
            ).one_or_none(),
            write=False,
        )
        return _token_info(found._mapping) if found is not None else None

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        """Every token (of ``user`` if given), oldest first."""
        q = select(t.tokens).order_by(t.tokens.c.created_at, t.tokens.c.token_id)
        if user is not None:
            q = q.where(t.tokens.c.user_name == user)
        rows = self._run("list tokens", lambda c: c.execute(q).all(), write=False)
        return [_token_info(r._mapping) for r in rows]

    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token; ``True`` if it was active until now (and the revision was bumped)."""

        def _revoke(conn: Connection) -> bool:
            res = conn.execute(
                update(t.tokens)
                .where(t.tokens.c.token_id == token_id, t.tokens.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            if res.rowcount != 1:
                return False
            _bump(conn)
            return True

        return self._run("revoke a token", _revoke, write=True)

    # -- audit chain ------------------------------------------------------------------------

    def append_audit(self, event: chain.AuditEvent) -> chain.AuditEntry:
        """Append one event to the hash chain in one short transaction.

        The chain head row is locked (``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
        SQLite), so concurrent writers in any process or replica never fork the chain or reuse a
        sequence number.

        Raises:
            StoreError: on any failure; the event is then not recorded.
        """

        def _append(conn: Connection) -> chain.AuditEntry:
            head = conn.execute(
                select(t.audit_head.c.seq, t.audit_head.c.entry_hash)
                .where(t.audit_head.c.id == 1)
                .with_for_update()
            ).one_or_none()
            if head is None:
                raise StoreError("guard database has no audit head row", hint="run migrate()")
            entry = chain.AuditEntry.link(int(head.seq) + 1, str(head.entry_hash), event)
            conn.execute(insert(t.audit).values(**_audit_row(entry)))
            conn.execute(
                update(t.audit_head)
                .where(t.audit_head.c.id == 1)
                .values(seq=entry.seq, entry_hash=entry.entry_hash)
            )
            return entry

        try:
            entry = self._run("append to the audit log", _append, write=True)
        except StoreError:
            raise
        except Exception as e:  # fail closed: any failure means "not recorded"
            raise self._fail("append to the audit log", e) from e
        if self._signer is not None and self._checkpoint_due(entry.seq):
            self.write_checkpoint(self._signer)
        return entry

    def head(self) -> tuple[int, str]:
        """The chain head as recorded by the store: (seq, entry_hash)."""

        def _head(conn: Connection) -> tuple[int, str]:
            row = conn.execute(
                select(t.audit_head.c.seq, t.audit_head.c.entry_hash).where(t.audit_head.c.id == 1)
            ).one()
            return int(row.seq), str(row.entry_hash)

        return self._run("read the audit head", _head, write=False)

    def iter_audit(self, start_seq: int = 0) -> Iterator[chain.AuditEntry]:
        """Entries with ``seq >= start_seq`` in ascending order, read in batches.

        Raises:
            StoreError: the database cannot be read, or a row is malformed.
        """
        after = start_seq - 1
        while True:
            q = select(t.audit).where(t.audit.c.seq > after).order_by(t.audit.c.seq)
            rows = self._run("read the audit log", _all(q.limit(AUDIT_BATCH)), write=False)
            for r in rows:
                yield _audit_entry(r._mapping)
            if len(rows) < AUDIT_BATCH:
                return
            after = int(rows[-1].seq)

    # -- checkpoints ------------------------------------------------------------------------

    def write_checkpoint(self, signer: keys.Signer) -> chain.Checkpoint | None:
        """Sign the current chain head with the ``audit`` key and store it (``None`` if empty)."""
        seq, head_hash = self.head()
        if seq == 0:
            return None
        now = datetime.now(UTC)
        env = chain.sign_checkpoint(seq, head_hash, signer, now).to_json()
        row = {
            "seq": seq,
            "entry_hash": head_hash,
            "created_at": now,
            "key_id": signer.key_id,
            "envelope": json.dumps(env, sort_keys=True),
        }
        new_id = self._run(
            "write an audit checkpoint",
            lambda c: c.execute(insert(t.checkpoints).values(**row)).inserted_primary_key,
            write=True,
        )
        self._last_checkpoint = now
        assert new_id is not None
        return chain.Checkpoint(int(new_id[0]), seq, head_hash, now, env)

    def checkpoints(self) -> list[chain.Checkpoint]:
        """Every stored checkpoint, oldest first.

        Raises:
            StoreError: the database cannot be read, or a row is malformed.
        """
        rows = self._run(
            "read audit checkpoints",
            lambda c: c.execute(select(t.checkpoints).order_by(t.checkpoints.c.id)).all(),
            write=False,
        )
        out = []
        for r in rows:
            try:
                env = json.loads(r.envelope)
            except ValueError:
                env = {}
            created = _tokens.aware(r.created_at)
            assert created is not None
            out.append(chain.Checkpoint(int(r.id), int(r.seq), str(r.entry_hash), created, env))
        return out

    def _checkpoint_due(self, seq: int) -> bool:
        if self._every and seq % self._every == 0:
            return True
        if self._interval is None:
            return False
        with self._cp_lock:
            now = datetime.now(UTC)
            if self._last_checkpoint is None:
                last = self._run(
                    "read audit checkpoints",
                    lambda c: c.execute(select(func.max(t.checkpoints.c.created_at))).scalar(),
                    write=False,
                )
                self._last_checkpoint = _tokens.aware(last) or datetime.fromtimestamp(0, UTC)
            if now - self._last_checkpoint < self._interval:
                return False
            self._last_checkpoint = now
            return True


def _all(q: Select[Any]) -> Callable[[Connection], Sequence[Row[Any]]]:
    def _read(conn: Connection) -> Sequence[Row[Any]]:
        return conn.execute(q).all()

    return _read


def _bump(conn: Connection) -> int:
    conn.execute(
        update(t.revision).where(t.revision.c.id == 1).values(revision=t.revision.c.revision + 1)
    )
    value = conn.execute(select(t.revision.c.revision).where(t.revision.c.id == 1)).scalar()
    if value is None:
        raise StoreError("guard database has no revision row", hint="run migrate()")
    return int(value)


def _token_info(m: Any) -> TokenInfo:
    created = _tokens.aware(m["created_at"])
    assert created is not None
    return TokenInfo(
        token_id=m["token_id"],
        user=m["user_name"],
        created_at=created,
        expires_at=_tokens.aware(m["expires_at"]),
        revoked_at=_tokens.aware(m["revoked_at"]),
        description=m["description"],
    )


def _audit_row(e: chain.AuditEntry) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "time": chain.format_time(e.time),
        "user_name": e.user,
        "action": e.action,
        "resource": e.resource,
        "outcome": e.outcome,
        "reasons": json.dumps(list(e.reasons), ensure_ascii=False),
        "request_id": e.request_id,
        "prev_hash": e.prev_hash,
        "entry_hash": e.entry_hash,
    }


def _audit_entry(m: Any) -> chain.AuditEntry:
    """Rebuild an entry from a row without judging it (tampered rows must still be readable).

    A row whose time or reasons no longer parse gets an entry hash that cannot verify, so that
    chain verification reports it as modified.
    """
    entry_hash = str(m["entry_hash"])
    try:
        time = chain.parse_time(str(m["time"]))
        reasons = json.loads(m["reasons"])
        if not isinstance(reasons, list) or not all(isinstance(x, str) for x in reasons):
            raise ValueError("reasons is not a JSON list of strings")
    except (ValueError, TypeError) as e:
        time, reasons = datetime.fromtimestamp(0, UTC), [f"(unreadable row: {e})"]
        entry_hash = "unreadable:" + entry_hash
    return chain.AuditEntry.model_construct(
        seq=int(m["seq"]),
        time=time,
        user=str(m["user_name"]),
        action=str(m["action"]),
        resource=str(m["resource"]),
        outcome=str(m["outcome"]),  # type: ignore[arg-type]  # kept raw: tampering must show
        reasons=reasons,
        request_id=str(m["request_id"]),
        prev_hash=str(m["prev_hash"]),
        entry_hash=entry_hash,
    )
