"""Feedback state in the guard database: replay store, batch history, quarantine, accepted records.

Tables (``guard_feedback_*``) live in the database the policy names (``storage.database_uri``,
overridable by ``$MLFLOW_GUARD_DATABASE_URI``) and are made by the alembic migrations of
:mod:`mlflow_guard.store` when a store opens it. Replicas share nothing but this database.
``guard_feedback_files`` holds the committed size of each CLI dataset file
(:mod:`mlflow_guard.feedback.repair`).

Uniqueness is decided by the database, never by read-then-write: a record's ``(source, id)`` is
*claimed* with ``INSERT … ON CONFLICT DO NOTHING RETURNING``, and only the transaction whose row
went in may write the record anywhere. On SQLite every write transaction starts with
``BEGIN IMMEDIATE`` so concurrent ingesters serialise instead of failing on lock upgrades.

Quotas are read-then-write (count a source's recent claims, then claim up to the rest), so they
need the writers of one source serialised. SQLite already is (``BEGIN IMMEDIATE``). On PostgreSQL
(read committed) :meth:`Tx.lock_sources` takes a transaction-scoped advisory lock per source
(``pg_advisory_xact_lock``, released at commit or rollback) before the count: the next writer of
that source counts only after the previous one committed, and each statement under read committed
sees what committed before it started. Keys are taken in ascending order, so two batches that
share sources never wait on each other in a cycle.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_guard.core.errors import PolicyError
from mlflow_guard.core.policy import Policy
from mlflow_guard.store.migrate import upgrade_engine

ENV_DATABASE_URI = "MLFLOW_GUARD_DATABASE_URI"
SOURCE_LOCK_NAMESPACE = b"mlflow-guard/feedback/source-lock/v1\x00"

metadata = sa.MetaData()

seen = sa.Table(
    "guard_feedback_seen",
    metadata,
    sa.Column("source", sa.String(128), primary_key=True),
    sa.Column("record_id", sa.String(128), primary_key=True),
    sa.Column("record_ts", sa.BigInteger, nullable=False),
    sa.Column("seen_at", sa.Float, nullable=False, index=True),
    sa.Column("batch_id", sa.String(64), nullable=False),
)

batches = sa.Table(
    "guard_feedback_batches",
    metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(128), primary_key=True),
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("label_counts", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
)

quarantine = sa.Table(
    "guard_feedback_quarantine",
    metadata,
    sa.Column("qid", sa.String(64), primary_key=True),
    sa.Column("batch_id", sa.String(64), nullable=False, index=True),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("released_by", sa.String(256)),
    sa.Column("released_at", sa.Float),
)

accepted = sa.Table(
    "guard_feedback_accepted",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("record_id", sa.String(128), nullable=False),
    sa.Column("batch_id", sa.String(64), nullable=False, index=True),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("accepted_at", sa.Float, nullable=False),
    sa.UniqueConstraint("source", "record_id", name="uq_guard_feedback_accepted_record"),
)

files = sa.Table(
    "guard_feedback_files",
    metadata,
    sa.Column("dataset_key", sa.String(64), primary_key=True),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("tail_len", sa.Integer, nullable=False),
    sa.Column("tail_sha256", sa.String(64), nullable=False),
    sa.Column("batch_id", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


def database_uri(policy: Policy, explicit: str | None = None) -> str:
    """The guard database URI: ``explicit``, else ``$MLFLOW_GUARD_DATABASE_URI``, else policy."""
    return explicit or os.environ.get(ENV_DATABASE_URI) or policy.storage.database_uri


def source_lock_key(source: str) -> int:
    """The PostgreSQL advisory-lock key of ``source``: a signed 64-bit integer.

    The first 8 bytes of sha256(namespace + source), big-endian and signed (``bigint``). The
    namespace keeps these keys apart from other users of advisory locks in the same database.
    """
    digest = hashlib.sha256(SOURCE_LOCK_NAMESPACE + source.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class Claim:
    """A record to claim in the replay store."""

    source: str
    record_id: str
    record_ts: int


@dataclass(frozen=True)
class FileState:
    """What the database knows of a dataset file (the CLI's destination) at its last commit.

    Attributes:
        dataset: the file's name (see :func:`mlflow_guard.feedback.repair.dataset_name`).
        size: its length in bytes when the last transaction that appended to it committed.
        tail_len: how many bytes before ``size`` ``tail_sha256`` covers.
        tail_sha256: hex sha256 of the file's bytes ``[size - tail_len, size)``.
    """

    dataset: str
    size: int
    tail_len: int
    tail_sha256: str

    @property
    def key(self) -> str:
        """Primary key of the row: hex sha256 of ``dataset`` (a name of any length)."""
        return dataset_key(self.dataset)


def dataset_key(dataset: str) -> str:
    """The ``guard_feedback_files`` key of a dataset name."""
    return hashlib.sha256(dataset.encode("utf-8")).hexdigest()


class Tx:
    """Operations inside one transaction (see :meth:`FeedbackStore.transaction`)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def claim(self, claims: Sequence[Claim], batch_id: str, now: float) -> set[tuple[str, str]]:
        """Insert each ``(source, id)``; return those this transaction inserted (not replays)."""
        got: set[tuple[str, str]] = set()
        dialect = self.conn.dialect.name
        rows = [
            {
                "source": c.source,
                "record_id": c.record_id,
                "record_ts": c.record_ts,
                "seen_at": now,
                "batch_id": batch_id,
            }
            for c in claims
        ]
        if not rows:
            return got
        if dialect in ("sqlite", "postgresql"):
            ins: Any
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert as sqlite_insert

                ins = sqlite_insert(seen)
            else:
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                ins = pg_insert(seen)
            stmt = ins.on_conflict_do_nothing().returning(seen.c.source, seen.c.record_id)
            # executemany with RETURNING: SQLAlchemy batches it as "insertmanyvalues"
            got.update((r[0], r[1]) for r in self.conn.execute(stmt, rows))
            return got
        for row in rows:
            nested = self.conn.begin_nested()
            try:
                self.conn.execute(seen.insert().values(row))
                nested.commit()
                got.add((str(row["source"]), str(row["record_id"])))
            except sa.exc.IntegrityError:
                nested.rollback()
        return got

    def lock_sources(self, sources: Iterable[str]) -> None:
        """Serialise this transaction with every other one that locks any of ``sources``.

        PostgreSQL: ``pg_advisory_xact_lock`` per source, in ascending key order (no deadlock
        between batches sharing sources), held until this transaction ends. SQLite: nothing to do,
        every write transaction already holds the database lock (``BEGIN IMMEDIATE``). Call it
        before reading anything the decision depends on (:meth:`count_since`).
        """
        if self.conn.dialect.name != "postgresql":
            return
        for key in sorted({source_lock_key(s) for s in sources}):
            self.conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def count_since(self, source: str, since: float) -> int:
        """Records of ``source`` claimed at or after ``since`` (for quotas)."""
        q = sa.select(sa.func.count()).where(seen.c.source == source, seen.c.seen_at >= since)
        return int(self.conn.execute(q).scalar_one())

    def history(self, source: str, limit: int) -> list[int]:
        """Accepted records per batch of ``source``, newest first."""
        q = (
            sa.select(batches.c.records)
            .where(batches.c.source == source)
            .order_by(batches.c.created_at.desc())
            .limit(limit)
        )
        return [int(r[0]) for r in self.conn.execute(q)]

    def label_history(self, limit: int) -> Counter[str]:
        """Label counts over the most recent ``limit`` batch rows (the history baseline)."""
        q = sa.select(batches.c.label_counts).order_by(batches.c.created_at.desc()).limit(limit)
        out: Counter[str] = Counter()
        for (text,) in self.conn.execute(q):
            out.update({str(k): int(v) for k, v in json.loads(text).items()})
        return out

    def add_batch(
        self, batch_id: str, per_source: dict[str, Counter[str]], counts: dict[str, int], now: float
    ) -> None:
        """Record this batch's accepted volume and labels per source."""
        rows = [
            {
                "batch_id": batch_id,
                "source": s,
                "records": n,
                "label_counts": json.dumps(dict(per_source.get(s, Counter())), sort_keys=True),
                "created_at": now,
            }
            for s, n in counts.items()
            if n > 0
        ]
        if rows:
            self.conn.execute(batches.insert(), rows)

    def add_accepted(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store accepted records (server destination): source, record_id, batch_id, raw, time."""
        if rows:
            self.conn.execute(accepted.insert(), list(rows))

    def add_quarantine(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store quarantine entries (see :mod:`mlflow_guard.feedback.quarantine`)."""
        if rows:
            self.conn.execute(quarantine.insert(), list(rows))

    def file_state(self, dataset: str) -> FileState | None:
        """The committed state of the dataset file ``dataset``, or ``None`` if never recorded."""
        q = sa.select(files.c.size, files.c.tail_len, files.c.tail_sha256).where(
            files.c.dataset_key == dataset_key(dataset)
        )
        row = self.conn.execute(q).first()
        if row is None:
            return None
        return FileState(dataset, int(row[0]), int(row[1]), str(row[2]))

    def adopt_file(self, state: FileState, batch_id: str, now: float) -> bool:
        """Record ``state`` for a dataset that has no row; ``False`` if another writer did first."""
        values = {
            "dataset_key": state.key,
            "dataset": state.dataset,
            "size": state.size,
            "tail_len": state.tail_len,
            "tail_sha256": state.tail_sha256,
            "batch_id": batch_id,
            "updated_at": now,
        }
        dialect = self.conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            ins: Any
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert as sqlite_insert

                ins = sqlite_insert(files)
            else:
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                ins = pg_insert(files)
            res = self.conn.execute(ins.values(values).on_conflict_do_nothing())
            return bool(res.rowcount)
        nested = self.conn.begin_nested()
        try:
            self.conn.execute(files.insert().values(values))
        except sa.exc.IntegrityError:
            nested.rollback()
            return False
        nested.commit()
        return True

    def advance_file(self, old: FileState, new: FileState, batch_id: str, now: float) -> bool:
        """Move a dataset's row from ``old`` to ``new``; ``False`` if the row is not ``old``.

        A compare-and-set: a writer that does not share the file lock (another host with the
        same database) cannot silently overwrite a state it never saw.
        """
        res = self.conn.execute(
            files.update()
            .where(
                files.c.dataset_key == old.key,
                files.c.size == old.size,
                files.c.tail_len == old.tail_len,
                files.c.tail_sha256 == old.tail_sha256,
            )
            .values(
                size=new.size,
                tail_len=new.tail_len,
                tail_sha256=new.tail_sha256,
                batch_id=batch_id,
                updated_at=now,
            )
        )
        return bool(res.rowcount)

    def purge(self, before: float) -> int:
        """Forget replay-store entries claimed before ``before``; return how many."""
        return int(self.conn.execute(seen.delete().where(seen.c.seen_at < before)).rowcount or 0)


class FeedbackStore:
    """The feedback tables in one database.

    Args:
        uri: SQLAlchemy URL (``sqlite:///guard.db``, ``postgresql://…``).
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        try:
            url = sa.engine.make_url(uri)
        except sa.exc.ArgumentError as e:
            raise PolicyError(
                f"invalid database URI {uri!r}",
                hint="set storage.database_uri in the policy (e.g. sqlite:///guard.db)",
            ) from e
        url = _with_installed_driver(url)
        kwargs: dict[str, Any] = {"future": True}
        if url.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": 60}
            if url.database and url.database != ":memory:":
                kwargs["poolclass"] = sa.pool.NullPool
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = sa.create_engine(url, **kwargs)
        if url.get_backend_name() == "sqlite":
            _sqlite_immediate(self.engine)
        try:
            upgrade_engine(self.engine)  # alembic; replicas starting together wait on a lock
        except sa.exc.SQLAlchemyError as e:
            raise PolicyError(
                f"cannot open the guard database {url.render_as_string(hide_password=True)}",
                details=[str(e).splitlines()[0]],
                hint="check storage.database_uri / $MLFLOW_GUARD_DATABASE_URI and that the "
                "database is reachable",
            ) from e

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One write transaction; commits on success, rolls back on any exception."""
        with self.engine.begin() as conn:
            yield Tx(conn)

    def quarantine_rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """Quarantine entries (optionally only those with ``status``), oldest first."""
        q = sa.select(quarantine).order_by(quarantine.c.received_at, quarantine.c.line)
        if status:
            q = q.where(quarantine.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def accepted_rows(self, batch_id: str | None = None) -> list[dict[str, Any]]:
        """Accepted records in arrival order."""
        q = sa.select(accepted).order_by(accepted.c.seq)
        if batch_id:
            q = q.where(accepted.c.batch_id == batch_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def mark_released(self, tx: Tx, qid: str, user: str, now: float) -> bool:
        """Mark a quarantined entry released; ``False`` if it was not (or no longer) quarantined."""
        res = tx.conn.execute(
            quarantine.update()
            .where(quarantine.c.qid == qid, quarantine.c.status == "quarantined")
            .values(status="released", released_by=user, released_at=now)
        )
        return bool(res.rowcount)

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def _with_installed_driver(url: sa.engine.URL) -> sa.engine.URL:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; fall back to psycopg2 if installed."""
    if url.drivername != "postgresql":
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return url.set(drivername="postgresql+psycopg2")
    return url


def _sqlite_immediate(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
