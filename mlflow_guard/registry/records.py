"""Persistence of approvals and promotion requests in the guard database.

Guard state lives only in the database (several replicas share it). The tables are created on
first use; the unique constraints in :mod:`.tables` make a concurrent duplicate approval and a
second application of the same promotion fail in the database, whichever replica tries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from mlflow_guard.core.approvals import Approval, Target
from mlflow_guard.core.errors import PolicyViolation
from mlflow_guard.registry import tables
from mlflow_guard.store.engine import WRITE, make_engine, parse_uri
from mlflow_guard.store.migrate import upgrade_engine


class DuplicateApproval(PolicyViolation):
    """The approver's latest recorded decision on this version and target is the same one."""


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PromotionRequest:
    """One promotion request (``pending`` → ``promoted`` | ``withdrawn`` | ``superseded``)."""

    id: int
    model: str
    version: str
    target: Target
    state: str
    requested_by: str
    requested_at: datetime
    comment: str = ""
    tag_value: str | None = None
    closed_by: str | None = None
    closed_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form for the REST API."""
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "target": str(self.target),
            "state": self.state,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at.isoformat(),
            "comment": self.comment,
            "tag_value": self.tag_value,
            "closed_by": self.closed_by,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
        }


class RegistryRecords:
    """Approvals and promotion requests in the guard database (SQLite or PostgreSQL).

    Args:
        database_uri: the guard database (the policy's ``storage.database_uri``).
    """

    def __init__(self, database_uri: str) -> None:
        self._url = parse_uri(database_uri)
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The engine, with the tables created on first use."""
        with self._lock:
            if self._engine is None:
                engine = make_engine(self._url)
                # alembic, under the migration lock (replicas starting together wait)
                upgrade_engine(engine, write_options={WRITE: True})
                self._engine = engine
            return self._engine

    # -- approvals ----------------------------------------------------------------------

    def record_approval(self, a: Approval, *, recorded_by: str, envelope: str | None) -> int:
        """Record one decision; return its row id.

        Raises:
            DuplicateApproval: the approver's latest decision on this version and target is the
                same decision over the same digest (also when another replica just recorded it).
        """
        t = tables.approvals
        key = (a.model, str(a.version), str(a.target), a.approver)
        where = (t.c.model == key[0]) & (t.c.version == key[1])
        where &= (t.c.target == key[2]) & (t.c.approver == key[3])
        try:
            with self.engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
                last = conn.execute(
                    select(t.c.seq, t.c.decision, t.c.root_digest)
                    .where(where)
                    .order_by(t.c.seq.desc())
                    .limit(1)
                ).first()
                if last is not None and (last.decision, last.root_digest) == (
                    a.decision,
                    a.root_digest,
                ):
                    raise DuplicateApproval(
                        f"{a.approver} already recorded '{a.decision}' for {a.model} version "
                        f"{a.version} -> {a.target}; one person or key counts once",
                        hint="nothing to do: the earlier decision stands",
                    )
                seq = 0 if last is None else int(last.seq) + 1
                row = conn.execute(
                    insert(t).values(
                        model=key[0],
                        version=key[1],
                        target=key[2],
                        approver=key[3],
                        seq=seq,
                        kind=a.kind,
                        decision=a.decision,
                        root_digest=a.root_digest,
                        issued_at=a.issued_at,
                        expires_at=a.expires_at,
                        key_id=a.key_id,
                        comment=a.comment,
                        envelope=envelope,
                        recorded_at=datetime.now(UTC),
                        recorded_by=recorded_by,
                    )
                )
                return int(row.inserted_primary_key[0])  # type: ignore[index]
        except IntegrityError as e:
            raise DuplicateApproval(
                f"{a.approver}'s decision on {a.model} version {a.version} -> {a.target} was "
                "recorded concurrently by another request; one person or key counts once",
                hint="nothing to do: the other request's decision stands",
            ) from e

    def approvals(self, model: str, version: str, target: Target) -> list[Approval]:
        """Every recorded decision on ``model`` version ``version`` for ``target``."""
        t = tables.approvals
        q = (
            select(t)
            .where(
                (t.c.model == model) & (t.c.version == str(version)) & (t.c.target == str(target))
            )
            .order_by(t.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            Approval(
                model=r.model,
                version=r.version,
                target=Target.parse(r.target),
                root_digest=r.root_digest,
                approver=r.approver,
                decision=r.decision,
                issued_at=_utc(r.issued_at) or datetime.now(UTC),
                kind=r.kind,
                expires_at=_utc(r.expires_at),
                comment=r.comment,
                key_id=r.key_id,
            )
            for r in rows
        ]

    # -- promotion requests -------------------------------------------------------------

    def request(
        self,
        model: str,
        version: str,
        target: Target,
        *,
        by: str,
        comment: str,
        tag_value: str | None,
    ) -> PromotionRequest:
        """Open a promotion request, or return the pending one for the same version and target."""
        t = tables.promotions
        where = (t.c.model == model) & (t.c.version == str(version)) & (t.c.target == str(target))
        for _ in range(3):
            with self.engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
                pending = conn.execute(
                    select(t).where(where & (t.c.state == "pending")).limit(1)
                ).first()
                if pending is not None:
                    return self._row(pending)
                attempt = conn.execute(select(func.count()).select_from(t).where(where)).scalar()
                try:
                    conn.execute(
                        insert(t).values(
                            model=model,
                            version=str(version),
                            target=str(target),
                            attempt=int(attempt or 0),
                            state="pending",
                            tag_value=tag_value,
                            comment=comment,
                            requested_by=by,
                            requested_at=datetime.now(UTC),
                        )
                    )
                except IntegrityError:
                    continue
            found = self.find(model, version, target, state="pending")
            if found:
                return found[0]
        raise PolicyViolation("could not open the promotion request (concurrent updates)")

    def get(self, request_id: int) -> PromotionRequest | None:
        """One request by id."""
        t = tables.promotions
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == request_id)).first()
        return self._row(row) if row is not None else None

    def find(
        self,
        model: str | None = None,
        version: str | None = None,
        target: Target | None = None,
        *,
        state: str | None = None,
        limit: int = 200,
    ) -> list[PromotionRequest]:
        """Requests matching the given fields, newest first."""
        t = tables.promotions
        q = select(t)
        if model is not None:
            q = q.where(t.c.model == model)
        if version is not None:
            q = q.where(t.c.version == str(version))
        if target is not None:
            q = q.where(t.c.target == str(target))
        if state is not None:
            q = q.where(t.c.state == state)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.c.id.desc()).limit(limit)).all()
        return [self._row(r) for r in rows]

    def close(self, request_id: int, state: str, *, by: str) -> bool:
        """Move a *pending* request to ``state``; ``False`` when it was no longer pending.

        The conditional update is what makes a promotion happen exactly once across replicas.
        """
        t = tables.promotions
        with self.engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
            res = conn.execute(
                update(t)
                .where((t.c.id == request_id) & (t.c.state == "pending"))
                .values(state=state, closed_by=by, closed_at=datetime.now(UTC))
            )
            return bool(res.rowcount == 1)

    def reopen(self, request_id: int) -> None:
        """Put a request claimed for promotion back to pending (the registry write failed)."""
        t = tables.promotions
        with self.engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
            conn.execute(
                update(t)
                .where(t.c.id == request_id)
                .values(state="pending", closed_by=None, closed_at=None)
            )

    @staticmethod
    def _row(r: Any) -> PromotionRequest:
        return PromotionRequest(
            id=int(r.id),
            model=r.model,
            version=r.version,
            target=Target.parse(r.target),
            state=r.state,
            requested_by=r.requested_by,
            requested_at=_utc(r.requested_at) or datetime.now(UTC),
            comment=r.comment,
            tag_value=r.tag_value,
            closed_by=r.closed_by,
            closed_at=_utc(r.closed_at),
        )
