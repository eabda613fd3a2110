"""Quarantine: every rejected record kept byte-for-byte with its reason, until an admin releases it.

Two homes with one entry shape: a JSONL file for the CLI (``data/feedback.quarantine.jsonl`` by
default, raw bytes base64-encoded so even invalid UTF-8 survives) and the
``guard_feedback_quarantine`` table for the server. The file is rewritten atomically (temporary
file + ``os.replace``) under an exclusive ``flock`` when an entry changes status.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mlflow_guard.core.errors import UsageError, VerificationError
from mlflow_guard.feedback import _files

QUARANTINED = "quarantined"
RELEASED = "released"


@dataclass(frozen=True)
class Entry:
    """One quarantined record.

    Attributes:
        qid: quarantine id (what ``quarantine show/release`` take).
        batch_id: the batch it arrived in.
        line: 1-based line in the batch.
        reason: a :class:`mlflow_guard.core.feedback.Reason` value.
        message: why, in words.
        detail: measured numbers (skew) or other structured context.
        raw: the record's exact bytes.
        received_at: Unix seconds when it arrived (freshness is re-judged at this instant).
        status: ``quarantined`` or ``released``.
    """

    qid: str
    batch_id: str
    line: int
    reason: str
    message: str
    raw: bytes
    received_at: float
    detail: dict[str, Any] = field(default_factory=dict)
    status: str = QUARANTINED
    released_by: str | None = None
    released_at: float | None = None

    @staticmethod
    def new(
        batch_id: str,
        line: int,
        reason: str,
        message: str,
        raw: bytes,
        received_at: float,
        detail: dict[str, Any] | None = None,
    ) -> Entry:
        """A fresh entry with a random id."""
        return Entry(
            uuid.uuid4().hex, batch_id, line, reason, message, raw, received_at, detail or {}
        )

    @property
    def sha256(self) -> str:
        """Hex sha256 of the raw bytes."""
        return hashlib.sha256(self.raw).hexdigest()

    def to_row(self) -> dict[str, Any]:
        """Row for the ``guard_feedback_quarantine`` table."""
        row = asdict(self)
        row["detail"] = json.dumps(self.detail, sort_keys=True)
        row["sha256"] = self.sha256
        return row

    @staticmethod
    def from_row(row: dict[str, Any]) -> Entry:
        """Entry from a table row."""
        data = {k: v for k, v in row.items() if k != "sha256"}
        data["detail"] = json.loads(data["detail"])
        data["raw"] = bytes(data["raw"])
        return Entry(**data)

    def to_json(self, *, with_raw: bool = True) -> dict[str, Any]:
        """JSON form (raw bytes as base64, with their sha256)."""
        out = asdict(self)
        out["raw"] = base64.b64encode(self.raw).decode("ascii") if with_raw else None
        out["sha256"] = self.sha256
        if not with_raw:
            out.pop("raw")
        return out

    @staticmethod
    def from_json(data: dict[str, Any], where: str) -> Entry:
        """Entry from its JSON form, checking the raw bytes against their sha256.

        Raises:
            VerificationError: the entry was altered (digest mismatch) or is malformed.
        """
        try:
            raw = base64.b64decode(data["raw"], validate=True)
            fields = {k: v for k, v in data.items() if k not in ("raw", "sha256")}
            entry = Entry(raw=raw, **fields)
        except (KeyError, TypeError, ValueError) as e:
            raise VerificationError(
                f"{where}: not a quarantine entry ({e})",
                hint="restore the quarantine file from version control",
            ) from e
        if entry.sha256 != data.get("sha256"):
            raise VerificationError(
                f"{where}: quarantined bytes do not match their sha256",
                hint="the quarantine file was edited; restore it from version control",
            )
        return entry


class QuarantineFile:
    """The CLI's quarantine: one JSON entry per line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def append(self, entries: list[Entry]) -> None:
        """Add entries (appended and fsynced under the lock; a failed append is undone).

        Raises:
            OSError: the file cannot be written; it is left as it was.
        """
        if not entries:
            return
        data = b"".join(
            json.dumps(e.to_json(), sort_keys=True).encode("utf-8") + b"\n" for e in entries
        )
        with self._locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                _files.append_all(fd, data, os.fstat(fd).st_size, self.path)
            finally:
                os.close(fd)

    def entries(self) -> list[Entry]:
        """Every entry, in order (digest-checked)."""
        if not self.path.exists():
            return []
        out = []
        for n, line in enumerate(self.path.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as e:
                raise VerificationError(
                    f"{self.path}:{n}: not JSON", hint="restore the quarantine file"
                ) from e
            out.append(Entry.from_json(data, f"{self.path}:{n}"))
        return out

    def get(self, qid: str) -> Entry:
        """The entry whose id is ``qid`` (a unique prefix of at least 6 characters is enough).

        Raises:
            UsageError: no such entry, or the prefix is ambiguous.
        """
        found = [
            e for e in self.entries() if e.qid == qid or (len(qid) >= 6 and e.qid.startswith(qid))
        ]
        if len(found) != 1:
            raise UsageError(
                f"quarantine entry {qid!r} {'not found' if not found else 'is ambiguous'} in "
                f"{self.path}",
                hint="list entries with `mlflow-guard feedback quarantine list`",
            )
        return found[0]

    def set_released(self, qid: str, user: str, now: float) -> Entry:
        """Mark ``qid`` released (atomic rewrite under the lock) and return the new entry.

        Raises:
            UsageError: no such quarantined entry.
        """
        with self._locked():
            entries = self.entries()
            idx = next((i for i, e in enumerate(entries) if e.qid == qid), None)
            if idx is None or entries[idx].status != QUARANTINED:
                raise UsageError(
                    f"{qid} is not a quarantined entry of {self.path}",
                    hint="list entries with `mlflow-guard feedback quarantine list`",
                )
            entries[idx] = replace(entries[idx], status=RELEASED, released_by=user, released_at=now)
            self._rewrite(entries)
            return entries[idx]

    def undo_release(self, released: Entry) -> None:
        """Put ``released`` (as :meth:`set_released` returned it) back in quarantine: the release
        it marked did not complete. An entry changed since then is left as it is."""
        with self._locked():
            entries = self.entries()
            idx = next((i for i, e in enumerate(entries) if e == released), None)
            if idx is None:
                return
            entries[idx] = replace(
                entries[idx], status=QUARANTINED, released_by=None, released_at=None
            )
            self._rewrite(entries)

    def _rewrite(self, entries: list[Entry]) -> None:
        tmp = self.path.with_name(self.path.name + f".tmp-{os.getpid()}")
        with tmp.open("wb") as f:
            for e in entries:
                f.write(json.dumps(e.to_json(), sort_keys=True).encode("utf-8") + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
