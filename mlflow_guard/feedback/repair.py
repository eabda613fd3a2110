"""Dataset files versus the database: find what a failed commit left behind in a dataset file.

The CLI appends accepted records to a JSONL file and fsyncs it *before* the claiming transaction
commits (a file cannot join a database transaction). If that commit fails, the file holds
records the replay store does not know: a replay of them would be accepted again, and no
attestation names them. So the transaction that claims the records also moves the file's row in
``guard_feedback_files`` to the file's new size, and the file stays locked (``flock``) from
before that transaction begins until after it ends. Whoever takes the lock next can tell what
the file should be:

- **no row** (first ingest into this file): the file's current size is adopted as committed,
  in its own transaction *before* anything is appended — so even a first batch whose commit
  fails is found later;
- **same size, tail digest matches**: clean;
- **longer, and the committed prefix still ends in the bytes recorded**: everything past the
  committed size came from a batch whose commit failed (or was appended by hand, bypassing
  ingestion). Each of those lines goes to the quarantine byte-for-byte with reason
  ``uncommitted`` (committed first), then the file is truncated to its committed size;
- **shorter, or the recorded bytes no longer end the committed prefix**: the file was
  replaced, truncated, rolled back or edited. That is never repaired: refused with exit 2.

What is recorded of the committed prefix: its size and the sha256 of its last
:data:`TAIL_WINDOW` bytes (all of it when shorter), not a digest of the whole prefix. The
question the repair asks is whether the byte offset ``size`` is still the boundary it was at the
commit: any insertion, deletion or truncation before it moves different bytes into the window,
and an edit of the last records changes them. Hashing the whole prefix would also catch a
same-length edit deep in the file, but it reads the whole dataset (which only grows) under the
lock at every ingest; the integrity of committed records is the job of the signed DVC manifest
and the ``dvc-guard-feedback`` hook, which verify every record. A window rather than "the last
line" keeps the cost bounded even for an adopted file with one enormous line, and covers at
least one whole record for the default ``max_record_bytes`` (64 KiB).

The dataset's name in the table is its path relative to the root of the git repository that
holds it (so clones of one repository at different places, sharing a PostgreSQL guard
database, share the row), else its absolute path; symlinks are resolved first.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from mlflow_guard.core import feedback_records as fr
from mlflow_guard.core.errors import UsageError
from mlflow_guard.feedback.store import FileState

TAIL_WINDOW = 65536


@dataclass(frozen=True)
class UncommittedLine:
    """One line found past a dataset's committed size.

    Attributes:
        line: 1-based line number within the uncommitted bytes.
        offset: byte offset of the line in the dataset file.
        raw: its exact bytes, newline removed.
    """

    line: int
    offset: int
    raw: bytes


@dataclass(frozen=True)
class Tail:
    """The uncommitted end of a dataset file: ``[committed_size, file size)``."""

    dataset: str
    path: Path
    committed_size: int
    size: int
    lines: list[UncommittedLine]


def dataset_name(path: str | os.PathLike[str]) -> str:
    """The dataset's name in ``guard_feedback_files``: git-root-relative, else absolute."""
    real = Path(os.path.realpath(path))
    for d in real.parents:
        if (d / ".git").exists():  # a directory, or a file in worktrees and submodules
            return real.relative_to(d).as_posix()
    return str(real)


def read_at(fd: int, offset: int, n: int) -> bytes:
    """Exactly ``n`` bytes of ``fd`` from ``offset`` (fewer only at end of file)."""
    chunks = []
    while n > 0:
        chunk = os.pread(fd, min(n, 1 << 24), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def state_of(dataset: str, fd: int, size: int) -> FileState:
    """The state to record for a file of ``size`` bytes (its window read from ``fd``)."""
    n = min(size, TAIL_WINDOW)
    return state_from_window(dataset, size, read_at(fd, size - n, n))


def state_from_window(dataset: str, size: int, end: bytes) -> FileState:
    """The state of a ``size``-byte file whose last bytes are ``end`` (at least the window)."""
    window = end[-TAIL_WINDOW:] if size else b""
    return FileState(dataset, size, len(window), hashlib.sha256(window).hexdigest())


def split_tail(data: bytes, start: int) -> list[UncommittedLine]:
    """Lines of ``data`` (found at ``start`` in the file), blank lines skipped, LF only."""
    out = []
    offset = start
    for n, raw in enumerate(data.split(b"\n"), 1):
        if not fr.is_blank(raw):
            out.append(UncommittedLine(n, offset, raw))
        offset += len(raw) + 1
    return out


def find_tail(fd: int, path: Path, state: FileState) -> Tail | None:
    """What the file holds past ``state`` (``None`` when nothing).

    Raises:
        UsageError: the file is shorter than its committed size, or its committed prefix no
            longer ends in the bytes recorded: it was replaced or edited, and is not repaired.
    """
    size = os.fstat(fd).st_size
    committed = state.size
    if size < committed:
        raise _changed(
            path,
            state,
            f"it is {size} bytes, shorter than the {committed} bytes last committed "
            "(truncated, replaced, or an older version checked out)",
        )
    window = read_at(fd, committed - state.tail_len, state.tail_len)
    if hashlib.sha256(window).hexdigest() != state.tail_sha256:
        raise _changed(
            path,
            state,
            f"its bytes {committed - state.tail_len}..{committed} differ from those last "
            "committed (the committed records were edited, or the file was replaced)",
        )
    if size == committed:
        return None
    data = read_at(fd, committed, size - committed)
    return Tail(state.dataset, path, committed, size, split_tail(data, committed))


def truncate(fd: int, tail: Tail) -> None:
    """Cut the uncommitted bytes off (after they are safe in the quarantine) and fsync."""
    os.ftruncate(fd, tail.committed_size)
    os.fsync(fd)


def _changed(path: Path, state: FileState, why: str) -> UsageError:
    return UsageError(
        f"the dataset {path} is not the file the guard database last committed: {why}; "
        "nothing was ingested",
        details=[
            f"recorded as {state.dataset!r}: {state.size} bytes, sha256 of its last "
            f"{state.tail_len} bytes {state.tail_sha256}",
            "the dataset, the replay store and the quarantine are unchanged",
        ],
        hint="restore the dataset as last ingested (e.g. `git pull` / `dvc pull` / `dvc "
        "checkout` of the latest version); a file that is meant to start over belongs at a new "
        "path",
    )
