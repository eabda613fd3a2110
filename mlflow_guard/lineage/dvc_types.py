"""The record of one DVC-tracked output (shared by the parser and its on-disk cache)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DvcOutput:
    """One DVC-tracked output.

    Attributes:
        path: POSIX path relative to the DVC repository root.
        source: the ``.dvc`` file or ``dvc.lock`` (with stage) that declares it.
        md5: DVC's md5 (``….dir`` for directories).
        hash_kind: ``md5`` or ``md5-dos2unix`` (legacy entries).
        size: bytes, when DVC recorded it.
        nfiles: number of files for a directory output.
        sha256: manifest digest from the dataset signature sidecar, when present.
        file_sha256: sha256 of the file itself (single-file outputs), from the same sidecar.
        signature: path of that sidecar (relative to the DVC root), when present.
    """

    path: str
    source: str
    md5: str
    hash_kind: str
    size: int | None = None
    nfiles: int | None = None
    sha256: str = ""
    file_sha256: str = ""
    signature: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict without empty fields."""
        d = {
            "path": self.path,
            "source": self.source,
            "md5": self.md5,
            "hash_kind": self.hash_kind,
            "size": self.size,
            "nfiles": self.nfiles,
            "sha256": self.sha256,
            "file_sha256": self.file_sha256,
            "signature": self.signature,
        }
        return {k: v for k, v in d.items() if v not in ("", None)}
