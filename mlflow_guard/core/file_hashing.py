"""Hashing one file or byte range safely: the reads every hashing path shares.

A file is opened with ``O_NOFOLLOW`` and must be the very file listed (device, inode, size,
mtime, ctime) before and after hashing. Ranges of 1 MiB and more are hashed from an ``mmap`` of
the page cache in 64 MiB windows (no copy; ``MLFLOW_GUARD_HASH_MMAP=0`` turns it off), smaller
ones read into the caller's reused buffer; blake3 inputs of 16 MiB and more use blake3's own
threads. Used by :mod:`mlflow_guard.core.hashing` (model directories) and
:mod:`mlflow_guard.core.tree_hashing` (dataset directories).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

from mlflow_guard.core.errors import GuardError, UnsafePath, UsageError, VerificationError

HashAlgorithm = Literal["sha256", "blake3"]
HASH_ALGORITHMS: tuple[HashAlgorithm, ...] = ("sha256", "blake3")
_WINDOW = 64 * 1024 * 1024
_MMAP_MIN = 1024 * 1024
_READ_BUF = 1024 * 1024
_BLAKE3_THREADS_MIN = 16 * 1024 * 1024
_FLAG_NAMES = ("O_CLOEXEC", "O_NONBLOCK", "O_NOFOLLOW")  # O_NOFOLLOW: never follow a link
_OPEN_FLAGS = os.O_RDONLY | sum(getattr(os, f, 0) for f in _FLAG_NAMES)


# Gets bytes just hashed (from threads); an optional ``set_total(int)`` is called once first.
ProgressCallback = Callable[[int], None]


class _Hasher(Protocol):
    def update(self, data: memoryview, /) -> object: ...
    def digest(self) -> bytes: ...


def _new_hasher(algorithm: str, size: int) -> _Hasher:
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake3":
        import blake3

        threads = blake3.blake3.AUTO if size >= _BLAKE3_THREADS_MIN else 1
        h: _Hasher = blake3.blake3(max_threads=threads)
        return h
    raise UsageError(f"unsupported hash algorithm {algorithm!r}", hint="use sha256 or blake3")


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _changed(path: str | Path, when: str) -> VerificationError:
    return VerificationError(f"{path} changed {when}", hint="retry when nothing writes to it")


def _open_error(path: str | Path, e: OSError) -> GuardError:
    if os.path.islink(path):
        return UnsafePath(f"refusing symlink {path}", hint="links are never followed")
    gone = not os.path.lexists(path)
    what = "disappeared before it was hashed" if gone else f"is unreadable: {e.strerror or e}"
    return VerificationError(f"{path} {what}", hint="retry; check its permissions")


def _open(path: Path, expected: os.stat_result | None) -> tuple[int, os.stat_result]:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as e:
        raise _open_error(path, e) from e
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafePath(f"refusing {path}: not a regular file")
    if expected is not None and _identity(st) != _identity(expected):
        os.close(fd)
        raise _changed(path, "between listing and hashing")
    return fd, st


def _mmap_enabled() -> bool:
    return os.environ.get("MLFLOW_GUARD_HASH_MMAP", "1") != "0"


def _hash_fd(
    fd: int,
    start: int,
    end: int,
    algorithm: str,
    buf: bytearray,
    progress: ProgressCallback | None,
    use_mmap: bool = True,
) -> bytes:
    length = end - start
    h = _new_hasher(algorithm, length)
    if length >= _MMAP_MIN and use_mmap:
        delta = start % mmap.ALLOCATIONGRANULARITY
        stop = delta + length
        willneed = getattr(mmap, "MADV_WILLNEED", None)
        m = mmap.mmap(fd, stop, offset=start - delta, access=mmap.ACCESS_READ)
        with m, memoryview(m) as view:
            for lo in range(delta, stop, _WINDOW):
                hi = min(lo + _WINDOW, stop)
                if willneed is not None and hi < stop:
                    page = hi - hi % mmap.PAGESIZE
                    m.madvise(willneed, page, min(_WINDOW, stop - page))
                h.update(view[lo:hi])
                if progress:
                    progress(hi - lo)
        return h.digest()
    view = memoryview(buf)
    if start:
        os.lseek(fd, start, os.SEEK_SET)
    pos = start
    while pos < end:
        n = os.readv(fd, [view[: min(len(buf), end - pos)]])
        if not n:
            raise VerificationError(f"file shrank while being hashed (at byte {pos})")
        h.update(view[:n])
        pos += n
        if progress:
            progress(n)
    return h.digest()


def _hash_checked(
    path: Path,
    start: int,
    end: int | None,
    algorithm: str,
    expected: os.stat_result | None,
    buf: bytearray,
    progress: ProgressCallback | None,
    use_mmap: bool = True,
) -> bytes:
    fd, st = _open(path, expected)
    try:
        end = st.st_size if end is None else end
        if end > st.st_size:
            raise _changed(path, f"size: expected at least {end} bytes, found {st.st_size}")
        digest = _hash_fd(fd, start, end, algorithm, buf, progress, use_mmap)
        if _identity(os.fstat(fd)) != _identity(st):
            raise _changed(path, "while being hashed")
        return digest
    finally:
        os.close(fd)


def hash_range(
    path: Path,
    start: int,
    end: int,
    algorithm: HashAlgorithm,
    progress: ProgressCallback | None = None,
) -> bytes:
    """Digest of bytes ``[start, end)`` of a regular file (symlinks refused).

    Raises:
        UnsafePath: ``path`` is a symlink or not a regular file.
        VerificationError: unreadable, shorter than ``end``, or changed while hashed.
    """
    buf = bytearray(_READ_BUF)
    return _hash_checked(path, start, end, algorithm, None, buf, progress, _mmap_enabled())


def hash_file(path: Path, algorithm: HashAlgorithm = "sha256") -> bytes:
    """Digest of a whole regular file (symlinks refused)."""
    buf = bytearray(_READ_BUF)
    return _hash_checked(path, 0, None, algorithm, None, buf, None, _mmap_enabled())
