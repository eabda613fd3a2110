"""Destinations for accepted and quarantined records: JSONL files (CLI) or tables (server)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from mlflow_guard.feedback import _files
from mlflow_guard.feedback.ingest import Accepted
from mlflow_guard.feedback.quarantine import Entry, QuarantineFile
from mlflow_guard.feedback.store import Tx


class FileDestination:
    """Appends accepted records, byte-for-byte, to a JSONL file (a DVC output).

    The append happens under an exclusive ``flock`` and is fsynced before the claiming
    transaction commits. An append that fails part-way (disk full, file-size limit) truncates the
    file back to its length before the append and re-raises, so the claims' rollback leaves no
    partial record behind.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def write(self, tx: Tx, batch_id: str, records: list[Accepted], now: float) -> None:
        """Append ``records`` (one line each)."""
        if not records:
            return
        data = b"".join(a.raw + b"\n" for a in records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            _files.append_all(fd, data, size, self.path)
        finally:
            os.close(fd)


class TableDestination:
    """Stores accepted records in ``guard_feedback_accepted`` (the server's destination)."""

    def write(self, tx: Tx, batch_id: str, records: list[Accepted], now: float) -> None:
        """Insert ``records``."""
        tx.add_accepted(
            [
                {
                    "source": a.record.source,
                    "record_id": a.record.id,
                    "batch_id": batch_id,
                    "raw": a.raw,
                    "accepted_at": now,
                }
                for a in records
            ]
        )


class FileQuarantineSink:
    """Quarantine entries into a :class:`QuarantineFile`."""

    def __init__(self, qfile: QuarantineFile) -> None:
        self.qfile = qfile

    def write(self, tx: Tx, entries: list[Entry]) -> None:
        """Append ``entries``."""
        self.qfile.append(entries)


class TableQuarantineSink:
    """Quarantine entries into ``guard_feedback_quarantine``."""

    def write(self, tx: Tx, entries: list[Entry]) -> None:
        """Insert ``entries``."""
        tx.add_quarantine([e.to_row() for e in entries])
