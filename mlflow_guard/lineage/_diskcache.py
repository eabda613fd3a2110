"""On-disk cache of parsed DVC files, so the first run in a new process is fast too.

Stored in ``<dvc root>/.dvc/tmp/mlflow-guard-lineage.json`` (DVC's own git-ignored scratch
folder). An entry is reused only while its DVC file and sidecar keep their (size, mtime_ns,
inode, ctime_ns). It holds lineage *claims* only — nothing here is trusted: the sidecar
signatures are verified by ``dvc-guard verify`` and the server's gate, never by lineage.
Unreadable or foreign-version files are ignored; failures to write are silent.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mlflow_guard.lineage.dvc_types import DvcOutput

CACHE_REL = os.path.join(".dvc", "tmp", "mlflow-guard-lineage.json")
_VERSION = 1
Sig = tuple[tuple[int, ...] | None, tuple[int, ...] | None]
Entry = tuple[Sig, tuple[list[DvcOutput], list[str]]]


def _sig(raw: Any) -> Sig | None:
    if not (isinstance(raw, list) and len(raw) == 2):
        return None
    out: list[tuple[int, ...] | None] = []
    for part in raw:
        if part is None:
            out.append(None)
        elif isinstance(part, list) and all(isinstance(x, int) for x in part):
            out.append(tuple(part))
        else:
            return None
    return (out[0], out[1])


def load(root: Path) -> dict[str, Entry]:
    """Entries keyed by the DVC file's absolute path; empty when absent or unreadable."""
    try:
        raw = json.loads((root / CACHE_REL).read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict) or raw.get("version") != _VERSION:
        return {}
    out: dict[str, Entry] = {}
    for rel, value in (raw.get("entries") or {}).items():
        try:
            sig = _sig(value["sig"])
            outs = [DvcOutput(**o) for o in value["outputs"]]
            problems = [str(p) for p in value["problems"]]
        except (KeyError, TypeError):
            continue
        if sig is not None:
            out[os.path.join(root, rel)] = (sig, (outs, problems))
    return out


def save(root: Path, entries: dict[str, Entry]) -> None:
    """Write the entries of files under ``root`` atomically; ignore any failure."""
    folder = root / os.path.dirname(CACHE_REL)
    doc = {
        "version": _VERSION,
        "entries": {
            os.path.relpath(full, root): {
                "sig": [list(s) if s is not None else None for s in sig],
                "outputs": [o.to_json() for o in outs],
                "problems": problems,
            }
            for full, (sig, (outs, problems)) in entries.items()
        },
    }
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".mlflow-guard-lineage.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, root / CACHE_REL)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
