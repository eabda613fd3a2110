"""Appending to the CLI's JSONL files so that a failed append leaves no partial line."""

from __future__ import annotations

import os
from pathlib import Path


def append_all(fd: int, data: bytes, size: int, path: Path) -> None:
    """Append ``data`` to ``fd`` (opened ``O_APPEND``, ``size`` bytes long, locked) and fsync.

    On failure the file is truncated back to ``size`` before the error propagates: a reader
    never sees a partial line. ``path`` is named in the error.
    """
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as e:
        os.ftruncate(fd, size)
        os.fsync(fd)
        if e.filename is None:
            e.filename = str(path)
        raise
