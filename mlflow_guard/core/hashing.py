"""Streaming, parallel hashing of model directories in OMS serialization order.

Serializations, byte-identical to ``model_signing``: ``files`` (one resource per file, the
digest of its bytes) and ``shards`` (one per byte range ``path:start:end``; an empty file has no
shard, hence no resource). Units run largest first on a few threads, small ones a batch at a
time (hashlib and blake3 release the GIL); ranges of 1 MiB and more are hashed from an ``mmap``
of the page cache (no copy), smaller ones read (``readv``) into a reused buffer per thread;
``MLFLOW_GUARD_HASH_MMAP=0`` turns mmap off.

Safety: symlinks and special files are refused, never followed; each file is opened with
``O_NOFOLLOW`` and must be the very file listed (device, inode, size, mtime, ctime) before and
after hashing, so a swap or a rewrite mid-way fails. A file truncated while mapped ends the
process with SIGBUS (fail closed). :func:`mlflow_guard.core.tree_hashing.hash_tree` lists and
hashes a data directory in one pass (the cold dataset verify) with these same reads and checks.
Design and measurements: ``docs/performance.md``.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal, TypeVar

from mlflow_guard.core.errors import UnsafePath, UsageError
from mlflow_guard.core.file_hashing import _READ_BUF, _hash_checked, _mmap_enabled
from mlflow_guard.core.file_hashing import HASH_ALGORITHMS as HASH_ALGORITHMS
from mlflow_guard.core.file_hashing import HashAlgorithm as HashAlgorithm
from mlflow_guard.core.file_hashing import ProgressCallback as ProgressCallback
from mlflow_guard.core.file_hashing import hash_file as hash_file
from mlflow_guard.core.file_hashing import hash_range as hash_range

DEFAULT_SHARD_SIZE = 1_000_000_000
GIT_PATHS: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")
_BATCH_BYTES = 4 * 1024 * 1024  # a worker takes small files this many bytes at a time
_BATCH_FILES = 32

# Bound at import: a test that wraps os.open must not silently switch to the fallback path.
_AT_FUNCTIONS = os.open in os.supports_dir_fd and os.scandir in os.supports_fd


@dataclass(frozen=True)
class Serialization:
    """How a model directory is turned into resources (recorded in the OMS predicate)."""

    method: Literal["files", "shards"] = "files"
    hash_type: HashAlgorithm = "sha256"
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()
    shard_size: int = DEFAULT_SHARD_SIZE

    def to_predicate(self) -> dict[str, object]:
        """The ``serialization`` object of the OMS predicate."""
        out: dict[str, object] = {
            "method": self.method,
            "hash_type": self.hash_type,
            "allow_symlinks": self.allow_symlinks,
        }
        if self.method == "shards":
            out["shard_size"] = self.shard_size
        if self.ignore_paths:
            out["ignore_paths"] = list(self.ignore_paths)
        return out


@dataclass(frozen=True)
class FileEntry:
    """A regular file under the model root: its ``lstat`` and the time of listing (0: unknown)."""

    name: str
    path: Path
    size: int
    stat: os.stat_result = field(compare=False, repr=False)
    listed_ns: int = field(default=0, compare=False, repr=False)


def normalize_ignore_paths(paths: Iterable[str]) -> tuple[str, ...]:
    """Validate ignore paths: relative, no ``..``; returned as POSIX strings, de-duplicated.

    Raises:
        UsageError: an absolute path or one that climbs out of the model directory.
    """
    out: list[str] = []
    for raw in paths:
        p = PurePosixPath(str(raw).replace("\\", "/").rstrip("/"))
        if p.is_absolute() or ".." in p.parts or str(p) in ("", "."):
            raise UsageError(
                f"ignore path {raw!r} must be relative to the model directory and stay inside it"
            )
        if str(p) not in out:
            out.append(str(p))
    return tuple(out)


def list_files(root: Path, ignore_paths: Iterable[str] = ()) -> list[FileEntry]:
    """List regular files under ``root`` (sorted by name), refusing symlinks and special files.

    Raises:
        UnsafePath: a symlink or a special file (device, FIFO, socket) under ``root``.
        UsageError: ``root`` is not a directory.
    """
    if root.is_symlink() or not root.is_dir():
        raise UsageError(f"{root} is not a directory", hint="pass the model's directory")
    ignore = normalize_ignore_paths(ignore_paths)
    prefixes = tuple(f"{p}/" for p in ignore)
    listed_ns = time.time_ns()
    out: list[FileEntry] = []

    def walk(d: str, rel: str) -> None:
        with os.scandir(d) as it:
            for e in it:
                name = f"{rel}{e.name}"
                if ignore and (name in ignore or name.startswith(prefixes)):
                    continue
                st = e.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    hint = "copy the target into the directory; links are never followed"
                    raise UnsafePath(f"refusing symlink {name} in {root}", hint=hint)
                if stat.S_ISDIR(st.st_mode):
                    walk(e.path, f"{name}/")
                elif stat.S_ISREG(st.st_mode):
                    out.append(FileEntry(name, Path(e.path), st.st_size, st, listed_ns))
                else:
                    raise UnsafePath(f"refusing special file {name} in {root}")

    walk(str(root), "")
    out.sort(key=lambda f: f.name)
    return out


def default_workers() -> int:
    """Threads to use: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class DigestCache:
    """Interface of the opt-in local digest cache (see :mod:`mlflow_guard.core.hashcache`)."""

    def get(self, entry: FileEntry, algorithm: HashAlgorithm) -> bytes | None:
        """A cached digest for an unchanged file, or ``None``."""
        raise NotImplementedError

    def put(self, entry: FileEntry, algorithm: HashAlgorithm, digest: bytes) -> None:
        """Remember a digest."""
        raise NotImplementedError


_Unit = tuple[str, FileEntry, int, int]
_J = TypeVar("_J")


def _units(
    files: Sequence[FileEntry],
    serialization: Serialization,
    cache: DigestCache | None,
    results: dict[str, bytes],
) -> list[_Unit]:
    algo = serialization.hash_type
    units: list[_Unit] = []
    if serialization.method == "shards" and serialization.shard_size <= 0:
        raise UsageError("shard_size must be positive")
    for f in files:
        if serialization.method == "files":
            hit = cache.get(f, algo) if cache is not None else None
            if hit is not None:
                results[f.name] = hit
            else:
                units.append((f.name, f, 0, f.size))
            continue
        size = serialization.shard_size
        for s in range(0, f.size, size):  # an empty file has no shard, as in model_signing
            e = min(s + size, f.size)
            units.append((f"{f.name}:{s}:{e}", f, s, e))
    units.sort(key=lambda u: u[3] - u[2], reverse=True)
    return units


def _batches(units: list[_Unit]) -> list[list[_Unit]]:
    """Group units (largest first) so that a worker takes a few MiB of small files at a time."""
    out: list[list[_Unit]] = []
    cur: list[_Unit] = []
    size = 0
    for u in units:
        cur.append(u)
        size += u[3] - u[2]
        if size >= _BATCH_BYTES or len(cur) >= _BATCH_FILES:
            out.append(cur)
            cur, size = [], 0
    if cur:
        out.append(cur)
    return out


def _parallel(
    jobs: Iterable[_J], work: Callable[[_J, bytearray, deque[_J]], None], workers: int
) -> None:
    """Run ``work(job, buffer, queue)`` for every job on ``workers`` threads (caller included).

    Each thread owns one read buffer. ``work`` may push a remainder of its job back on
    ``queue`` (``appendleft``) for another thread. The first error stops the others after their
    current job and is re-raised here.
    """
    queue: deque[_J] = deque(jobs)
    errors: list[BaseException] = []

    def worker() -> None:
        buf = bytearray(_READ_BUF)
        while not errors:
            try:
                job = queue.popleft()  # deque operations are thread-safe
            except IndexError:
                return
            try:
                work(job, buf, queue)
            except BaseException as exc:  # re-raised in the calling thread
                errors.append(exc)
                return

    n = max(1, min(workers, len(queue)))
    helpers = [threading.Thread(target=worker, daemon=True) for _ in range(n - 1)]
    for t in helpers:
        t.start()
    worker()  # the calling thread works too
    try:
        for t in helpers:
            t.join()
    except BaseException:  # interrupted: stop the helpers after their current job
        errors.append(KeyboardInterrupt())
        raise
    if errors:
        raise errors[0]


def hash_entries(
    files: Sequence[FileEntry],
    serialization: Serialization,
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    cache: DigestCache | None = None,
) -> dict[str, bytes]:
    """Hash files into OMS resources ``{name: digest}``, in manifest order.

    Units (files, or shards ``path:start:end``) are hashed largest first by ``workers`` threads,
    small ones a batch at a time.

    Args:
        files: from :func:`list_files`.
        serialization: method, algorithm and shard size.
        workers: threads (default: the usable CPUs).
        progress: called with the number of bytes hashed, from worker threads.
        cache: optional digest cache, honoured only for the ``files`` method. Never pass one
            at a trust boundary (server, load time): it trusts file metadata.

    Raises:
        UsageError: unsupported algorithm or shard size.
        UnsafePath: a listed file became a symlink or special file.
        VerificationError: a file vanished, is unreadable or changed while being hashed.
    """
    algo = serialization.hash_type
    if algo not in HASH_ALGORITHMS:
        raise UsageError(f"unsupported hash algorithm {algo!r}", hint="use sha256 or blake3")
    results: dict[str, bytes] = {}
    units = _units(files, serialization, cache, results)
    set_total = getattr(progress, "set_total", None)
    if callable(set_total):
        set_total(sum(u[3] - u[2] for u in units))
    put_cache = cache if serialization.method == "files" else None
    lock = threading.Lock()
    use_mmap = _mmap_enabled()

    def work(batch: list[_Unit], buf: bytearray, _: object) -> None:
        for name, f, s, e in batch:
            digest = _hash_checked(f.path, s, e, algo, f.stat, buf, progress, use_mmap)
            results[name] = digest
            if put_cache is not None:
                with lock:
                    put_cache.put(f, algo, digest)

    _parallel(_batches(units), work, workers or default_workers())
    if serialization.method == "files":
        order = sorted(results, key=_parts)
    else:
        order = sorted(results, key=lambda k: resource_sort_key(k, "shards"))
    return {k: results[k] for k in order}


def _parts(name: str) -> list[str]:
    """Path components of a resource name, as ``PurePosixPath(name).parts`` gives them."""
    parts = name.split("/")
    if "" in parts or "." in parts:  # not a normalised relative name: let pathlib decide
        return list(PurePosixPath(name).parts)
    return parts


def resource_sort_key(
    name: str, method: Literal["files", "shards"] = "files"
) -> tuple[tuple[str, ...], int, int]:
    """Order of resources in a manifest, as ``model_signing`` orders them.

    Files compare by path components; shards by path components, then numeric start and end.
    """
    head, sep, end = name.rpartition(":")
    if method == "shards" and sep:
        path, sep2, start = head.rpartition(":")
        if sep2 and start.isdigit() and end.isdigit():
            return tuple(_parts(path)), int(start), int(end)
    return tuple(_parts(name)), -1, -1


def root_digest(digests: Iterable[bytes]) -> str:
    """OMS root digest: sha256 over the resource digests concatenated in manifest order."""
    h = hashlib.sha256()
    for d in digests:
        h.update(d)
    return h.hexdigest()
