"""Streaming, parallel hashing of model directories in OMS serialization order.

Two serializations, as OMS v1.0 defines them (and ``model_signing`` implements):

- ``files``: one resource per file, named by its POSIX path relative to the model root, with the
  digest of the whole file.
- ``shards``: one resource per byte range ``path:start:end`` of ``shard_size`` bytes, so one
  large file is hashed by several threads.

Work units run on a thread pool (``hashlib`` and ``blake3`` release the GIL on large buffers).
Symlinks and special files are refused: a signature never follows a link out of the model.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from mlflow_guard.core.errors import UnsafePath, UsageError

HashAlgorithm = Literal["sha256", "blake3"]
HASH_ALGORITHMS: tuple[HashAlgorithm, ...] = ("sha256", "blake3")
DEFAULT_SHARD_SIZE = 1_000_000_000
GIT_PATHS: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")
_BUF = 4 * 1024 * 1024
_BLAKE3_MMAP_MIN = 16 * 1024 * 1024

ProgressCallback = Callable[[int], None]


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
    """A regular file found under the model root."""

    name: str
    path: Path
    size: int
    stat: os.stat_result = field(compare=False, repr=False)


def _is_ignored(name: str, ignore: Sequence[PurePosixPath]) -> bool:
    p = PurePosixPath(name)
    return any(p == ig or p.is_relative_to(ig) for ig in ignore)


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
    ignore = [PurePosixPath(p) for p in normalize_ignore_paths(ignore_paths)]
    out: list[FileEntry] = []

    def walk(d: Path, rel: str) -> None:
        with os.scandir(d) as it:
            for e in it:
                name = f"{rel}{e.name}"
                if _is_ignored(name, ignore):
                    continue
                st = e.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise UnsafePath(
                        f"refusing symlink {name} in {root}",
                        hint="copy the target into the model directory; links are never followed",
                    )
                if stat.S_ISDIR(st.st_mode):
                    walk(Path(e.path), f"{name}/")
                elif stat.S_ISREG(st.st_mode):
                    out.append(FileEntry(name, Path(e.path), st.st_size, st))
                else:
                    raise UnsafePath(f"refusing special file {name} in {root}")

    walk(root, "")
    out.sort(key=lambda f: f.name)
    return out


def _sha256_range(path: Path, start: int, end: int, progress: ProgressCallback | None) -> bytes:
    h = hashlib.sha256()
    buf = bytearray(min(_BUF, max(end - start, 1)))
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        if start:
            f.seek(start)
        remaining = end - start
        while remaining > 0:
            n = f.readinto(view[: min(len(buf), remaining)])
            if not n:
                raise UsageError(
                    f"{path} shrank while being hashed", hint="retry when it is stable"
                )
            h.update(view[:n])
            remaining -= n
            if progress:
                progress(n)
    return h.digest()


def _blake3_range(path: Path, start: int, end: int, progress: ProgressCallback | None) -> bytes:
    import blake3

    if start == 0 and end - start >= _BLAKE3_MMAP_MIN and end == path.stat().st_size:
        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        h.update_mmap(str(path))
        if progress:
            progress(end - start)
        return h.digest()
    h = blake3.blake3()
    buf = bytearray(min(_BUF, max(end - start, 1)))
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        if start:
            f.seek(start)
        remaining = end - start
        while remaining > 0:
            n = f.readinto(view[: min(len(buf), remaining)])
            if not n:
                raise UsageError(
                    f"{path} shrank while being hashed", hint="retry when it is stable"
                )
            h.update(view[:n])
            remaining -= n
            if progress:
                progress(n)
    return h.digest()


def hash_range(
    path: Path,
    start: int,
    end: int,
    algorithm: HashAlgorithm,
    progress: ProgressCallback | None = None,
) -> bytes:
    """Digest of bytes ``[start, end)`` of a file."""
    if algorithm == "sha256":
        return _sha256_range(path, start, end, progress)
    if algorithm == "blake3":
        return _blake3_range(path, start, end, progress)
    raise UsageError(f"unsupported hash algorithm {algorithm!r}", hint="use sha256 or blake3")


def hash_file(path: Path, algorithm: HashAlgorithm = "sha256") -> bytes:
    """Digest of a whole file."""
    return hash_range(path, 0, path.stat().st_size, algorithm)


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


def hash_entries(
    files: Sequence[FileEntry],
    serialization: Serialization,
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    cache: DigestCache | None = None,
) -> dict[str, bytes]:
    """Hash files into OMS resources ``{name: digest}`` (names per the serialization method).

    Args:
        files: from :func:`list_files`.
        serialization: method, algorithm and shard size.
        workers: threads (default: the usable CPUs).
        progress: called with the number of bytes hashed, from worker threads.
        cache: optional digest cache, honoured only for the ``files`` method.
    """
    algo = serialization.hash_type
    if algo not in HASH_ALGORITHMS:
        raise UsageError(f"unsupported hash algorithm {algo!r}", hint="use sha256 or blake3")
    units: list[tuple[str, FileEntry, int, int]] = []
    results: dict[str, bytes] = {}
    for f in files:
        if serialization.method == "files":
            if cache is not None:
                hit = cache.get(f, algo)
                if hit is not None:
                    results[f.name] = hit
                    if progress:
                        progress(f.size)
                    continue
            units.append((f.name, f, 0, f.size))
        else:
            size = serialization.shard_size
            if size <= 0:
                raise UsageError("shard_size must be positive")
            starts = range(0, f.size, size) if f.size else [0]
            for s in starts:
                e = min(s + size, f.size)
                units.append((f"{f.name}:{s}:{e}", f, s, e))
    units.sort(key=lambda u: u[3] - u[2], reverse=True)
    lock = threading.Lock()

    def run(unit: tuple[str, FileEntry, int, int]) -> tuple[str, bytes]:
        name, f, s, e = unit
        digest = hash_range(f.path, s, e, algo, progress)
        if cache is not None and serialization.method == "files":
            with lock:
                cache.put(f, algo, digest)
        return name, digest

    n = workers or default_workers()
    if n == 1 or len(units) <= 1:
        results.update(run(u) for u in units)
    else:
        with ThreadPoolExecutor(max_workers=min(n, len(units))) as pool:
            results.update(pool.map(run, units))
    order = sorted(results, key=lambda k: resource_sort_key(k, serialization.method))
    return {k: results[k] for k in order}


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
            return PurePosixPath(path).parts, int(start), int(end)
    return PurePosixPath(name).parts, -1, -1


def root_digest(digests: Iterable[bytes]) -> str:
    """OMS root digest: sha256 over the resource digests concatenated in manifest order."""
    h = hashlib.sha256()
    for d in digests:
        h.update(d)
    return h.hexdigest()
