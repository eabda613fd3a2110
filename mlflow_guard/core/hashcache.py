"""Opt-in local digest cache for developer-side hooks (never at a trust boundary).

A digest is reused only while the file's (path, size, mtime_ns, device, inode, ctime_ns) are
unchanged. ``ctime`` cannot be set from user space, so an edit that keeps the size and restores
the mtime (the trick that fools DVC's state cache) still invalidates the entry.

File timestamps are coarse (a kernel tick, up to 2 s on some file systems), so an edit made in
the same tick as the previous one can leave ``ctime`` unchanged. As git does for its index
("racily clean" entries), a digest is only stored when the file's ``ctime`` is older than the
listing by more than :data:`RACY_WINDOW_NS`; newer files are hashed again next time.

The cache trusts file metadata, so servers and load-time verification
(:func:`mlflow_guard.core.oms.verify_model`) never use one. A cache file that is a symlink, not
owned by the current user, or writable by group or others is ignored (it could be poisoned).
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from mlflow_guard.core.hashing import DigestCache, FileEntry, HashAlgorithm

_VERSION = 2
RACY_WINDOW_NS = 2_000_000_000
"""Files changed less than this long before they were listed are not cached."""


def _read_trusted(path: Path) -> bytes | None:
    """The file's bytes if it is a regular file (not a link) of ours that others cannot write.

    Checked on the open descriptor, so the file cannot be swapped between check and read.
    """
    try:
        fd = os.open(
            path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        getuid = getattr(os, "getuid", None)
        if getuid is not None and st.st_uid != getuid():
            return None
        return f.read()


class HashCache(DigestCache):
    """A JSON file mapping ``algorithm:abs-path`` to (stat signature, hex digest).

    Args:
        path: the cache file (created on :meth:`save`, mode 0600).
        racy_window_ns: see :data:`RACY_WINDOW_NS` (tests may shorten it).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, racy_window_ns: int = RACY_WINDOW_NS
    ) -> None:
        self.path = Path(path)
        self.racy_window_ns = racy_window_ns
        self._created_ns = time.time_ns()
        self._data: dict[str, list[object]] = {}
        self._dirty = False
        data = _read_trusted(self.path)
        if data is None:
            return
        try:
            raw = json.loads(data)
        except ValueError:
            return
        if isinstance(raw, dict) and raw.get("version") == _VERSION:
            entries = raw.get("entries", {})
            if isinstance(entries, dict):
                self._data = entries

    @staticmethod
    def _sig(entry: FileEntry) -> list[object]:
        st = entry.stat
        return [st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, st.st_ctime_ns]

    @staticmethod
    def _key(entry: FileEntry, algorithm: HashAlgorithm) -> str:
        return f"{algorithm}:{os.path.abspath(entry.path)}"

    def get(self, entry: FileEntry, algorithm: HashAlgorithm) -> bytes | None:
        """The cached digest if the file's stat signature is unchanged, else ``None``."""
        hit = self._data.get(self._key(entry, algorithm))
        if not isinstance(hit, list) or len(hit) != 2 or hit[0] != self._sig(entry):
            return None
        try:
            digest = bytes.fromhex(str(hit[1]))
        except ValueError:
            return None
        return digest if len(digest) == 32 else None

    def put(self, entry: FileEntry, algorithm: HashAlgorithm, digest: bytes) -> None:
        """Remember the digest of a file as it was listed, unless it changed too recently."""
        listed = entry.listed_ns or self._created_ns
        if entry.stat.st_ctime_ns >= listed - self.racy_window_ns:
            return
        self._data[self._key(entry, algorithm)] = [self._sig(entry), digest.hex()]
        self._dirty = True

    def save(self) -> None:
        """Write the cache atomically (mode 0600) if it changed."""
        if not self._dirty:
            return
        import tempfile  # only when saving: keeps the hook's start-up short

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".hashcache.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": _VERSION, "entries": self._data}, f)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._dirty = False
