"""The sha256 of the workspace files of a DVC output (no pydantic model, no signature code).

Kept light so that a process can start hashing before it imports the signature machinery
(see :mod:`dvc_hooks.prefetch`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from dvc_hooks import dvcfiles
from mlflow_guard.core import hashing, tree_hashing
from mlflow_guard.core.errors import ManifestMismatch, UnsafePath, VerificationError

Reader = Callable[[str], bytes | None]


def workspace_reader(root: Path) -> Reader:
    """Read repository files from the working tree."""

    def read(rel: str) -> bytes | None:
        """Bytes of ``rel`` in the working tree, or ``None`` if it does not exist."""
        try:
            return (root / rel).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    return read


def _missing_dir(out: dvcfiles.DvcOut) -> ManifestMismatch:
    return ManifestMismatch(
        f"{out.path}: the data directory is not in the workspace",
        missing=[out.path],
        hint="fetch it with `dvc pull` / `dvc checkout`, or remove the DVC record",
    )


def _unreadable(out: dvcfiles.DvcOut, e: OSError, where: str = "") -> VerificationError:
    return VerificationError(
        f"{out.path}: cannot read data file: {e.strerror or e}",
        details=[where or str(e.filename or out.path)],
        hint="check the file's permissions; unreadable data cannot be verified",
    )


def _no_symlinked_folder(root: Path, out: dvcfiles.DvcOut) -> None:
    """Refuse an output whose path passes through a symlinked folder (it leaves the repository).

    Raises:
        UnsafePath: a folder on the way to the output is a symbolic link.
    """
    cur = root
    for part in out.path.split("/")[:-1]:
        cur = cur / part
        if cur.is_symlink():
            raise UnsafePath(
                f"{out.path}: {cur.relative_to(root).as_posix()!r} is a symbolic link",
                hint="DVC outputs are read inside the repository only; replace the link by "
                "the folder itself (`dvc checkout`)",
            )


def digests(
    root: Path,
    out: dvcfiles.DvcOut,
    *,
    cache: hashing.DigestCache | None = None,
    workers: int | None = None,
) -> dict[str, tuple[str, int]]:
    """``{file path inside the output: (sha256 hex, size)}`` of the workspace's files of ``out``.

    A directory without a cache takes the one-pass :func:`tree_hashing.hash_tree` (the cold path:
    no per-file listing stat, no model objects); otherwise the files are listed with their
    stat, which the opt-in cache needs.

    Raises:
        ManifestMismatch: the output is not in the workspace.
        UnsafePath: a symlink or special file in it, or a symlinked folder on the way to it.
        VerificationError: a file is unreadable or changed while being hashed.
    """
    _no_symlinked_folder(root, out)
    try:
        if out.is_dir and cache is None:
            p = root / out.path
            if not p.is_dir() or p.is_symlink():
                raise _missing_dir(out)
            return {n: (d.hex(), size) for n, size, d in tree_hashing.hash_tree(p, workers=workers)}
        files = entries(root, out)
        found = hashing.hash_entries(files, hashing.Serialization(), workers=workers, cache=cache)
    except VerificationError as e:
        cause = e.__cause__
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
            raise _unreadable(out, cause, e.summary) from e
        raise
    except OSError as e:
        raise _unreadable(out, e) from e
    return {f.name: (found[f.name].hex(), f.size) for f in files}


def entries(root: Path, out: dvcfiles.DvcOut) -> list[hashing.FileEntry]:
    """The files of ``out`` in the workspace with their ``lstat`` (what the digest cache needs).

    Raises:
        ManifestMismatch: the output is not in the workspace, or is not a regular file.
        UnsafePath: a symlink or special file in a directory output, or a symlinked folder on
            the way to the output.
    """
    _no_symlinked_folder(root, out)
    p = root / out.path
    if out.is_dir:
        if not p.is_dir() or p.is_symlink():
            raise _missing_dir(out)
        return hashing.list_files(p)
    listed_ns = time.time_ns()
    try:
        st = os.stat(p, follow_symlinks=False)
    except FileNotFoundError:
        raise ManifestMismatch(
            f"{out.path}: the data file is not in the workspace",
            missing=[out.path],
            hint="fetch it with `dvc pull` / `dvc checkout`, or remove the DVC record",
        ) from None
    if not os.path.isfile(p) or os.path.islink(p):
        raise ManifestMismatch(f"{out.path}: not a regular file", changed=[out.path])
    return [hashing.FileEntry("", p, st.st_size, st, listed_ns)]
