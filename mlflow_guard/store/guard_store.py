"""The guard state store: revision counter, API tokens, the audit hash chain and its checkpoints.

Guard state lives only in this database (SQLite by default, PostgreSQL for several replicas),
never in a replica's memory. Every failure to read or write raises :class:`StoreError`; the
server answers 503 and denies.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, Select, func, insert, select, update

from mlflow_guard.core import audit as chain
from mlflow_guard.core import keys
from mlflow_guard.core.errors import UsageError
from mlflow_guard.store import rows as _rows
from mlflow_guard.store import tables as t
from mlflow_guard.store import tokens as _tokens
from mlflow_guard.store.checkpoints import CheckpointSchedule
from mlflow_guard.store.database import Database
from mlflow_guard.store.errors import StoreError
from mlflow_guard.store.group_commit import GroupCommit
from mlflow_guard.store.tokens import TokenInfo

if TYPE_CHECKING:
    from mlflow_guard.core.policy import Policy

AUDIT_BATCH = 1000
APPEND_BATCH = 64


class GuardStore(Database):
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
        super().__init__(database_uri)
        self._signer = checkpoint_signer
        self._schedule = CheckpointSchedule(checkpoint_every, checkpoint_interval)
        self._appender = GroupCommit(self._append_batch, max_batch=APPEND_BATCH)

    @classmethod
    def from_policy(cls, policy: Policy) -> GuardStore:
        """The store of ``storage`` in the policy: database, audit key, checkpoint schedule.

        Raises:
            StoreError: invalid database URI.
            KeyMaterialError: the audit key cannot be read.
        """
        from mlflow_guard.store.config import audit_signer

        s = policy.storage
        return cls(
            s.database_uri,
            checkpoint_signer=audit_signer(policy),
            checkpoint_every=s.checkpoint_every,
            checkpoint_interval=s.checkpoint_interval,
        )

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
        info = _rows.token_info(found._mapping)
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
        return _rows.token_info(found._mapping) if found is not None else None

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        """Every token (of ``user`` if given), oldest first."""
        q = select(t.tokens).order_by(t.tokens.c.created_at, t.tokens.c.token_id)
        if user is not None:
            q = q.where(t.tokens.c.user_name == user)
        rows = self._run("list tokens", lambda c: c.execute(q).all(), write=False)
        return [_rows.token_info(r._mapping) for r in rows]

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

    def revoke_user_tokens(self, user: str) -> int:
        """Revoke every active token of ``user`` (e.g. the account was deleted); return how many.

        The revision is bumped in the same transaction, so every replica refuses them at once.
        """

        def _revoke(conn: Connection) -> int:
            res = conn.execute(
                update(t.tokens)
                .where(t.tokens.c.user_name == user, t.tokens.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            _bump(conn)
            return int(res.rowcount)

        return self._run("revoke a user's tokens", _revoke, write=True)

    # -- audit chain ------------------------------------------------------------------------

    def append_audit(self, event: chain.AuditEvent) -> chain.AuditEntry:
        """Append one event to the hash chain in one short transaction; return the entry.

        The chain head row is locked (``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
        SQLite), so concurrent writers in any process or replica never fork the chain or reuse a
        sequence number. Threads of one process appending at the same moment share one
        transaction (:mod:`~mlflow_guard.store.group_commit`); each returns only once its entry
        is committed.

        Raises:
            StoreError: on any failure; the event is then not recorded.
        """
        try:
            canonical = event.canonical()
        except Exception as e:  # fail closed: an event that cannot be hashed is not recorded
            raise self._fail("append to the audit log", e) from e
        try:
            entry = self._appender.submit((event, canonical))
        except StoreError:
            raise
        except Exception as e:  # fail closed: any failure means "not recorded"
            raise self._fail("append to the audit log", e) from e
        if self._signer is not None and self._schedule.due(entry.seq, self._last_checkpoint_time):
            self.write_checkpoint(self._signer)
        return entry

    def _append_batch(self, items: list[tuple[chain.AuditEvent, bytes]]) -> list[chain.AuditEntry]:
        pg = self.dialect == "postgresql"

        def _append(conn: Connection) -> list[chain.AuditEntry]:
            head = conn.execute(
                select(t.audit_head.c.seq, t.audit_head.c.entry_hash)
                .where(t.audit_head.c.id == 1)
                .with_for_update()
            ).one_or_none()
            if head is None:
                raise StoreError("guard database has no audit head row", hint="run migrate()")
            seq, prev = int(head.seq), str(head.entry_hash)
            out = []
            for event, canonical in items:
                seq += 1
                entry = chain.AuditEntry.link(seq, prev, event, canonical)
                out.append(entry)
                prev = entry.entry_hash
            move = (
                update(t.audit_head).where(t.audit_head.c.id == 1).values(seq=seq, entry_hash=prev)
            )
            new_rows = [_rows.audit_row(e) for e in out]
            if pg:  # one round trip: INSERT in a CTE of the UPDATE
                ins = insert(t.audit).values(new_rows).returning(t.audit.c.seq).cte("ins")
                conn.execute(move.add_cte(ins))
            else:
                conn.execute(insert(t.audit), new_rows)
                conn.execute(move)
            return out

        return self._run("append to the audit log", _append, write=True)

    def head(self) -> tuple[int, str]:
        """The chain head as recorded by the store: (seq, entry_hash)."""

        def _head(conn: Connection) -> tuple[int, str]:
            row = conn.execute(
                select(t.audit_head.c.seq, t.audit_head.c.entry_hash).where(t.audit_head.c.id == 1)
            ).one()
            return int(row.seq), str(row.entry_hash)

        return self._run("read the audit head", _head, write=False)

    def iter_audit(
        self, start_seq: int = 0, end_seq: int | None = None
    ) -> Iterator[chain.AuditEntry]:
        """Entries with ``start_seq <= seq <= end_seq`` in ascending order, read in batches.

        Raises:
            StoreError: the database cannot be read.
        """
        after = start_seq - 1
        while True:
            q = select(t.audit).where(t.audit.c.seq > after).order_by(t.audit.c.seq)
            if end_seq is not None:
                q = q.where(t.audit.c.seq <= end_seq)
            rows = self._run("read the audit log", _all(q.limit(AUDIT_BATCH)), write=False)
            for r in rows:
                yield _rows.audit_entry(r._mapping)
            if len(rows) < AUDIT_BATCH:
                return
            after = int(rows[-1].seq)

    def max_seq(self) -> int:
        """The largest ``seq`` stored (0 when empty); compare with :meth:`head`."""
        q = select(func.coalesce(func.max(t.audit.c.seq), 0))
        return int(
            self._run("read the audit log", lambda c: c.execute(q).scalar_one(), write=False)
        )

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
        self._schedule.written(now)
        assert new_id is not None
        return chain.Checkpoint(int(new_id[0]), seq, head_hash, now, env)

    def checkpoints(self) -> list[chain.Checkpoint]:
        """Every stored checkpoint, oldest first.

        Raises:
            StoreError: the database cannot be read, or a row is malformed.
        """
        found = self._run(
            "read audit checkpoints",
            _all(select(t.checkpoints).order_by(t.checkpoints.c.id)),
            write=False,
        )
        return [_rows.checkpoint(r) for r in found]

    def _last_checkpoint_time(self) -> datetime | None:
        last = self._run(
            "read audit checkpoints",
            lambda c: c.execute(select(func.max(t.checkpoints.c.created_at))).scalar(),
            write=False,
        )
        return _tokens.aware(last)


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
