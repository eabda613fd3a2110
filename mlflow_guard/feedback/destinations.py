"""Destinations for accepted and quarantined records: JSONL files (CLI) or tables (server)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from mlflow_guard.core.errors import GuardError, UsageError
from mlflow_guard.feedback import _files, repair
from mlflow_guard.feedback.ingest import Accepted, TailSink
from mlflow_guard.feedback.quarantine import Entry, QuarantineFile
from mlflow_guard.feedback.store import FeedbackStore, FileState, Tx
from mlflow_guard.store.errors import StoreError


class FileDestination:
    """Appends accepted records, byte-for-byte, to a JSONL file (a DVC output).

    :meth:`held` takes an exclusive ``flock`` on the file and keeps it until the batch's
    transaction has ended (committed or rolled back), so no other writer appends after lines
    that then fail to commit; before the batch's work it moves what a failed commit left in the
    file to the quarantine (:mod:`mlflow_guard.feedback.repair`). :meth:`write` moves the file's
    row in ``guard_feedback_files`` to its new size in the claiming transaction, then appends and
    fsyncs. An append that fails part-way (disk full, file-size limit) truncates the file back to
    its length before the append and re-raises, so the claims' rollback leaves no partial record.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._held: _Held | None = None
        self.size_after: int | None = None
        """The file's committed length right after the last batch held it (its records
        included, later batches' not): what that batch's attestation covers."""

    @contextmanager
    def held(
        self, store: FeedbackStore, batch_id: str, now: float, quarantine: TailSink
    ) -> Iterator[None]:
        """Lock the file and reconcile it with the database (see :class:`Destination`).

        A file that cannot be opened (a directory in its place, no permission) is not an error
        yet: nothing can append to it, and :meth:`write` raises the error where an append that
        fails would, after the quarantine is safe.
        """
        try:
            fd, created = self._open_locked()
        except OSError as e:
            if e.filename is None:
                e.filename = str(self.path)
            self._held = _Held(-1, None, error=e)
            try:
                yield
            finally:
                self._held = None
            return
        appended = 0
        try:
            state = self._reconcile(fd, store, batch_id, now, quarantine)
            self.size_after = state.size
            self._held = h = _Held(fd, state)
            try:
                yield
            except Exception as e:
                if h.appended and not isinstance(e, GuardError):
                    raise self._uncommitted(h.appended, e) from e
                raise
            finally:
                appended = h.appended
        finally:
            self._held = None
            if created and not appended and os.fstat(fd).st_size == 0:
                os.unlink(self.path)  # nothing went in: leave no empty file (a waiter re-opens)
            os.close(fd)  # releases the lock: after the transaction has ended

    def _open_locked(self) -> tuple[int, bool]:
        """Open (creating if missing) and ``flock`` the file; ``(fd, created)``.

        The lock is on the inode: one that is no longer at ``path`` once the lock is granted
        (unlinked or renamed over while this waited) is let go and ``path`` opened again.
        """
        while True:
            fd, created = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                st, here = os.fstat(fd), os.stat(self.path)
            except FileNotFoundError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            if (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino):
                return fd, created
            os.close(fd)

    def _open(self) -> tuple[int, bool]:
        flags = os.O_RDWR | os.O_APPEND
        try:
            return os.open(self.path, flags), False
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:  # another writer created it in between
            return os.open(self.path, flags), False

    def _reconcile(
        self, fd: int, store: FeedbackStore, batch_id: str, now: float, quarantine: TailSink
    ) -> FileState:
        name = repair.dataset_name(self.path)
        tail = None
        with store.transaction() as tx:
            state = tx.file_state(name)
            if state is None:
                state = repair.state_of(name, fd, os.fstat(fd).st_size)
                if tx.adopt_file(state, batch_id, now):
                    return state
                state = tx.file_state(name)
                assert state is not None
            tail = repair.find_tail(fd, self.path, state)
            if tail is not None:
                quarantine(tx, tail)
        if tail is not None:  # committed: the lines are safe in the quarantine
            repair.truncate(fd, tail)
        return state

    def write(self, tx: Tx, batch_id: str, records: list[Accepted], now: float) -> None:
        """Append ``records`` (one line each) to the held file, moving its row in ``tx``."""
        h = self._held
        if h is None:
            raise RuntimeError("FileDestination.write outside FileDestination.held()")
        if not records:
            return
        if h.error is not None:
            raise h.error
        assert h.state is not None
        data = b"".join(a.raw + b"\n" for a in records)
        fd, old = h.fd, h.state
        size = os.fstat(fd).st_size
        if size != old.size:
            raise UsageError(
                f"the dataset {self.path} changed during the ingest ({old.size} -> {size} bytes) "
                "without taking its lock; no record was accepted",
                hint="stop whatever writes the dataset directly and run the same ingest again",
            )
        end = repair.read_at(
            fd, size - min(size, repair.TAIL_WINDOW), min(size, repair.TAIL_WINDOW)
        )
        if end and not end.endswith(b"\n"):
            data = b"\n" + data
        new = repair.state_from_window(old.dataset, size + len(data), end + data)
        if not tx.advance_file(old, new, batch_id, now):
            raise UsageError(
                f"the guard database's record of {self.path} changed during the ingest; no "
                "record was accepted",
                details=["another host sharing the database ingested into its own copy of it"],
                hint="ingest into one copy of the dataset only, then run the same ingest again",
            )
        _files.append_all(fd, data, size, self.path)
        h.state = new
        h.appended += len(records)
        self.size_after = new.size

    def _uncommitted(self, n: int, cause: Exception) -> StoreError:
        why = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        return StoreError(
            f"the guard database did not commit after {n} record(s) were appended to "
            f"{self.path}: they are in the dataset but not in the replay store",
            details=[
                f"the database said: {why}",
                "the next ingest or release into this dataset moves them to the quarantine "
                "(reason 'uncommitted') and truncates the dataset to its committed size",
                "no attestation was written for this batch",
            ],
            hint="fix the guard database, then ingest again; re-sent records are accepted once",
        )


@dataclass
class _Held:
    fd: int
    state: FileState | None
    appended: int = 0
    error: OSError | None = None


class TableDestination:
    """Stores accepted records in ``guard_feedback_accepted`` (the server's destination)."""

    def held(
        self, store: FeedbackStore, batch_id: str, now: float, quarantine: TailSink
    ) -> AbstractContextManager[None]:
        """Nothing to hold: the table joins the transaction."""
        return nullcontext()

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
