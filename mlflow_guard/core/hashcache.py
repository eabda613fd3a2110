"""Opt-in local digest cache for developer-side hooks (never at a trust boundary).

A digest is reused only while the file's (path, size, mtime_ns, inode, ctime_ns) are unchanged.
``ctime`` cannot be set from user space, so restoring the mtime after an edit (the trick that
fools DVC's state cache) still invalidates the entry. Servers and load-time verification never
pass a cache to :func:`mlflow_guard.core.hashing.hash_entries`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from mlflow_guard.core.hashing import DigestCache, FileEntry, HashAlgorithm

_VERSION = 1


class HashCache(DigestCache):
    """A JSON file mapping ``algorithm:abs-path`` to (stat signature, hex digest)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._data: dict[str, list[object]] = {}
        self._dirty = False
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(raw, dict) and raw.get("version") == _VERSION:
                entries = raw.get("entries", {})
                if isinstance(entries, dict):
                    self._data = entries
        except (OSError, ValueError):
            self._data = {}

    @staticmethod
    def _sig(entry: FileEntry) -> list[object]:
        st = entry.stat
        return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]

    @staticmethod
    def _key(entry: FileEntry, algorithm: HashAlgorithm) -> str:
        return f"{algorithm}:{entry.path.resolve()}"

    def get(self, entry: FileEntry, algorithm: HashAlgorithm) -> bytes | None:
        """The cached digest if the file's stat signature is unchanged."""
        hit = self._data.get(self._key(entry, algorithm))
        if not hit or hit[0] != self._sig(entry):
            return None
        try:
            return bytes.fromhex(str(hit[1]))
        except ValueError:
            return None

    def put(self, entry: FileEntry, algorithm: HashAlgorithm, digest: bytes) -> None:
        """Remember the digest of a file as it is now."""
        self._data[self._key(entry, algorithm)] = [self._sig(entry), digest.hex()]
        self._dirty = True

    def save(self) -> None:
        """Write the cache atomically (mode 0600) if it changed."""
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".hashcache.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": _VERSION, "entries": self._data}, f)
        os.replace(tmp, self.path)
        self._dirty = False
