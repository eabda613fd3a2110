"""One-pass listing and hashing of a data directory (the cold path of dataset verification).

:func:`hash_tree` gives the same files, names, sizes and digests as
:func:`~mlflow_guard.core.hashing.list_files` + :func:`~mlflow_guard.core.hashing.hash_entries`
(``files`` method) at less cost per file: the listing reads entry types only, directories are
walked through descriptors whose identity is checked again before their files are hashed, and
small files are read once into a reused buffer. It shares the reading, identity checks and
thread pool of :mod:`mlflow_guard.core.hashing`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import deque
from pathlib import Path

from mlflow_guard.core import hashing as _hashing
from mlflow_guard.core.errors import UnsafePath, UsageError, VerificationError
from mlflow_guard.core.file_hashing import (
    _OPEN_FLAGS,
    HASH_ALGORITHMS,
    HashAlgorithm,
    _changed,
    _hash_fd,
    _mmap_enabled,
    _open_error,
)
from mlflow_guard.core.hashing import (
    _AT_FUNCTIONS,
    Serialization,
    _parallel,
    default_workers,
    hash_entries,
    list_files,
)

_SPLIT_BYTES = 4 * 1024 * 1024  # a file this big hands the rest of its batch to another thread

TreeFile = tuple[str, int, bytes]
"""One file found by :func:`hash_tree`: (POSIX path under the root, size, digest)."""

# dir path, name prefix, (dev, ino), file names, position of the job in manifest order
_DirJob = tuple[str, str, tuple[int, int], list[str], tuple[int, ...]]


def _dir_flags() -> int:
    return os.O_RDONLY | sum(getattr(os, f, 0) for f in ("O_CLOEXEC", "O_DIRECTORY", "O_NOFOLLOW"))


def _scan(root: Path) -> list[_DirJob]:
    """Walk ``root`` through directory descriptors, classifying entries by their type only."""
    jobs: list[_DirJob] = []
    flags = _dir_flags()

    def walk(dfd: int, path: str, prefix: str) -> None:
        entries: list[tuple[str, bool]] = []  # (name, is a directory)
        with os.scandir(dfd) as it:
            for e in it:
                if e.is_symlink():
                    hint = "copy the target into the directory; links are never followed"
                    raise UnsafePath(f"refusing symlink {prefix}{e.name} in {root}", hint=hint)
                if e.is_dir(follow_symlinks=False):
                    entries.append((e.name, True))
                elif e.is_file(follow_symlinks=False):
                    entries.append((e.name, False))
                else:
                    raise UnsafePath(f"refusing special file {prefix}{e.name} in {root}")
        # Depth first over names in order (for one component, string order is path-component
        # order), so the jobs come out in manifest order and the results need no sort.
        entries.sort()
        st = os.fstat(dfd)
        ident = (st.st_dev, st.st_ino)
        run: list[str] = []

        def flush() -> None:
            for i in range(0, len(run), _hashing._BATCH_FILES):
                jobs.append((path, prefix, ident, run[i : i + _hashing._BATCH_FILES], (len(jobs),)))
            run.clear()

        for name, is_dir in entries:
            if not is_dir:
                run.append(name)
                continue
            flush()
            sub = os.path.join(path, name)
            try:
                cfd = os.open(name, flags, dir_fd=dfd)
            except OSError as e:
                raise _open_error(sub, e) from e
            try:
                walk(cfd, sub, f"{prefix}{name}/")
            finally:
                os.close(cfd)
        flush()

    top = str(root)
    try:
        fd = os.open(top, flags)
    except OSError as e:
        raise UsageError(f"{root} is not a directory", hint="pass the data directory") from e
    try:
        walk(fd, top, "")
    finally:
        os.close(fd)
    return jobs


def hash_tree(
    root: Path, algorithm: HashAlgorithm = "sha256", *, workers: int | None = None
) -> list[TreeFile]:
    """List and hash every regular file under ``root`` in one pass, in manifest order.

    The cold path of dataset verification: the same files, names and digests as
    :func:`list_files` + :func:`hash_entries` (``files`` method), at less cost per file. The
    listing reads entry types from the directory (no ``lstat`` per file); directories are
    opened without following links and each must still be the listed one (device, inode) when
    its files are hashed; each file is opened relative to it with ``O_NOFOLLOW``, must be a
    regular file, and its ``fstat`` (device, inode, size, mtime, ctime) must be unchanged after
    hashing. Sizes come from that ``fstat``. There is no per-file listing stat, so no cache.

    Raises:
        UsageError: ``root`` is not a directory (or is a symlink), or an unknown algorithm.
        UnsafePath: a symlink or special file under ``root``, at listing or at hashing.
        VerificationError: a file or directory vanished, is unreadable, or changed.
    """
    if algorithm not in HASH_ALGORITHMS:
        raise UsageError(f"unsupported hash algorithm {algorithm!r}", hint="use sha256 or blake3")
    if not _AT_FUNCTIONS:  # pragma: no cover - no openat/fdopendir (not POSIX)
        files = list_files(root)
        digests = hash_entries(files, Serialization(hash_type=algorithm), workers=workers)
        return [(f.name, f.size, digests[f.name]) for f in files]
    jobs = _scan(root)
    use_mmap = _mmap_enabled()
    sha256 = algorithm == "sha256"
    flags = _dir_flags()
    parts: list[tuple[tuple[int, ...], list[TreeFile]]] = []

    def work(job: _DirJob, buf: bytearray, queue: deque[_DirJob]) -> None:
        path, prefix, ident, names, order = job
        done: list[TreeFile] = []
        parts.append((order, done))  # list.append is thread-safe
        try:
            dfd = os.open(path, flags)
        except OSError as e:
            raise _open_error(path, e) from e
        try:
            st = os.fstat(dfd)
            if (st.st_dev, st.st_ino) != ident:
                raise _changed(path, "between listing and hashing")
            view = memoryview(buf)
            cap = len(buf)
            open_, fstat, readv, close = os.open, os.fstat, os.readv, os.close  # hot loop
            sha, is_reg = hashlib.sha256 if sha256 else None, stat.S_ISREG
            for i, name in enumerate(names):
                try:
                    fd = open_(name, _OPEN_FLAGS, dir_fd=dfd)
                except OSError as e:
                    raise _open_error(os.path.join(path, name), e) from e
                try:
                    st = fstat(fd)
                    if not is_reg(st.st_mode):
                        raise UnsafePath(f"refusing {os.path.join(path, name)}: not a regular file")
                    size = st.st_size
                    last = size >= _SPLIT_BYTES and i + 1 < len(names)
                    if last:  # a big file: another thread takes the rest of the batch
                        queue.appendleft((path, prefix, ident, names[i + 1 :], (*order, 1)))
                    if sha is not None and size <= cap:
                        got = readv(fd, [view[:size]]) if size else 0
                        while got < size:  # a short read: rare on a regular file
                            n = readv(fd, [view[got:size]])
                            if not n:
                                raise VerificationError(
                                    f"file shrank while being hashed (at byte {got})"
                                )
                            got += n
                        digest = sha(view[:size]).digest()
                    else:
                        digest = _hash_fd(fd, 0, size, algorithm, buf, None, use_mmap)
                    after = fstat(fd)
                    if (
                        after.st_mtime_ns != st.st_mtime_ns
                        or after.st_ctime_ns != st.st_ctime_ns
                        or after.st_size != size
                        or after.st_ino != st.st_ino
                        or after.st_dev != st.st_dev
                    ):
                        raise _changed(os.path.join(path, name), "while being hashed")
                finally:
                    close(fd)
                done.append((prefix + name, size, digest))
                if last:
                    return
        finally:
            os.close(dfd)

    _parallel(jobs, work, workers or default_workers())
    parts.sort(key=lambda p: p[0])  # a job's remainder (order + (1,)) sorts right after it
    return [f for _, done in parts for f in done]
