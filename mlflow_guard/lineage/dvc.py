"""DVC inputs of a repository, read from ``dvc.lock`` and ``.dvc`` files directly (no ``dvc``).

For every output: its path (relative to the DVC root), DVC's md5 and hash kind (``md5``, or
``md5-dos2unix`` for legacy entries without ``hash:``), size, file count for directories, and —
when the dataset-signature sidecar written by ``dvc-guard sign`` exists and signs this very
version (the md5 it records equals the DVC file's) — the sha256 manifest digest from it. A
sidecar for another version is reported as a lineage problem and leaves the output unsigned.
DVC's md5 is a lookup key, never a security digest. The sidecar's DSSE signature is not
verified here (``dvc-guard verify`` does that).
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import re
import subprocess
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from mlflow_guard.lineage import _diskcache
from mlflow_guard.lineage.dvc_types import DvcOutput

__all__ = ["DvcOutput", "collect", "find_root"]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SKIP_DIRS = {".git", ".dvc", ".venv", "node_modules", "__pycache__"}


def find_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: cwd) that holds a ``.dvc`` folder."""
    p = Path(start or os.getcwd()).resolve()
    for d in (p, *p.parents):
        if (d / ".dvc").is_dir():
            return d
    return None


def _list_dvc_files(root: Path) -> list[str]:
    """Repository-relative POSIX paths of every ``*.dvc`` and ``dvc.lock`` (git, else a walk)."""
    try:
        out = subprocess.run(
            [
                "git",
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
                "--",
                "*.dvc",
                "*dvc.lock",
            ],
            cwd=root,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        names = out.decode("utf-8", "surrogateescape").split("\0")
        return sorted(
            {n for n in names if n.endswith(".dvc") or posixpath.basename(n) == "dvc.lock"}
        )
    except (OSError, subprocess.SubprocessError):
        pass
    found: list[str] = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in _SKIP_DIRS]
        rel = os.path.relpath(d, root).replace(os.sep, "/")
        found.extend(
            posixpath.normpath(posixpath.join(rel, f))
            for f in files
            if f.endswith(".dvc") or f == "dvc.lock"
        )
    return sorted(found)


def _entry(out: Any, base: str, source: str) -> DvcOutput | None:
    if not isinstance(out, dict) or not isinstance(out.get("path"), str):
        return None
    md5 = out.get("md5") or out.get("etag") or out.get("checksum") or ""
    size = out.get("size")
    nfiles = out.get("nfiles")
    path = posixpath.join(base, out["path"]) if base else out["path"]
    return DvcOutput(
        path=path[2:] if path.startswith("./") else path,
        source=source,
        md5=str(md5),
        hash_kind=str(out.get("hash") or "md5-dos2unix"),
        size=size if isinstance(size, int) else None,
        nfiles=nfiles if isinstance(nfiles, int) else None,
    )


_SPECIAL = {"yes", "no", "true", "false", "on", "off", "null", "~", "y", "n"}
_PLAIN = re.compile(r"^[A-Za-z0-9_./-]+$")
_NUMBERISH = re.compile(r"^[0-9._eE+-]+$")
_cache_lock = threading.Lock()
_cache: dict[str, tuple[Any, tuple[list[DvcOutput], list[str]]]] = {}
_loaded: set[str] = set()
_dirty: set[str] = set()


def _fast_dvc(text: str) -> dict[str, Any] | None:
    """Parse the exact layout DVC writes for a ``.dvc`` file (``outs:`` with plain scalars).

    Returns ``None`` for anything else — quoted or special scalars, numbers where strings are
    expected, nested keys, other top-level keys — and the caller then uses the full YAML parser,
    so the result always equals what YAML says. About 20× faster than YAML for 1,000 files.
    """
    lines = text.splitlines()
    if not lines or lines[0] != "outs:":
        return None
    outs: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for line in lines[1:]:
        if line.startswith("- "):
            cur = {}
            outs.append(cur)
        elif not (line.startswith("  ") and cur is not None):
            return None
        key, sep, val = line[2:].partition(": ")
        if not sep or not key.isidentifier() or not _PLAIN.match(val) or key in cur:
            return None
        if key in ("size", "nfiles") and val.isdigit() and (val == "0" or val[0] != "0"):
            cur[key] = int(val)
        elif _NUMBERISH.match(val) or val.lower() in _SPECIAL:
            return None
        else:
            cur[key] = val
    return {"outs": outs}


def _sig(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _parse_dvc_yaml(data: bytes) -> Any:
    try:
        fast = _fast_dvc(data.decode("utf-8"))
    except UnicodeDecodeError:
        fast = None
    if fast is not None:
        return fast
    try:
        return yaml.load(data, Loader=_Loader)  # noqa: S506 - CSafeLoader
    except yaml.YAMLError as e:
        return e


def _parse_sidecar(data: bytes) -> dict[str, tuple[str, str, str]]:
    """{output path: (manifest sha256, file sha256, signed DVC md5)} from a signature sidecar.

    The md5 is what the manifest says the signed version's DVC record was: a sidecar left
    behind after the data changed (``dvc add`` again, not re-signed) names another md5 and
    must not make the new version look signed.
    """
    try:
        raw = json.loads(data)
        statement = json.loads(base64.b64decode(raw["payload"]))
        subjects = statement["subject"]
        outputs = (statement.get("predicate") or {}).get("outputs") or []
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
    file_sha: dict[str, str] = {}
    md5: dict[str, str] = {}
    for o in outputs if isinstance(outputs, list) else []:
        if isinstance(o, dict):
            md5[str(o.get("path"))] = str(o.get("md5") or "")
            files = o.get("files") or []
            if not o.get("is_dir") and len(files) == 1 and isinstance(files[0], dict):
                file_sha[str(o.get("path"))] = str(files[0].get("sha256", ""))
    out: dict[str, tuple[str, str, str]] = {}
    for s in subjects if isinstance(subjects, list) else []:
        if isinstance(s, dict) and isinstance(s.get("digest"), dict):
            name = str(s.get("name", ""))
            sha = str(s["digest"].get("sha256", ""))
            if sha:
                out[name] = (sha, file_sha.get(name, ""), md5.get(name, ""))
    return out


def _outputs_of(root: Path, rel: str) -> tuple[list[DvcOutput], list[str]]:
    """Outputs declared by one DVC file (with sidecar digests) and problems; never raises.

    Reused from an in-process cache while the file and its sidecar keep their (size, mtime,
    inode, ctime): repeated runs in one process pay one ``stat`` per file.
    """
    full = os.path.join(root, rel)
    sig = (_sig(full), _sig(full + ".sig"))
    with _cache_lock:
        hit = _cache.get(full)
    if hit is not None and hit[0] == sig:
        return hit[1]
    result = _parse_outputs(full, rel)
    with _cache_lock:
        _cache[full] = (sig, result)
        _dirty.add(str(root))
    return result


def _parse_outputs(full: str, rel: str) -> tuple[list[DvcOutput], list[str]]:
    try:
        with open(full, "rb") as f:
            data = _parse_dvc_yaml(f.read())
    except OSError as e:
        return [], [f"{rel}: unreadable ({type(e).__name__})"]
    if isinstance(data, yaml.YAMLError):
        return [], [f"{rel}: unreadable ({type(data).__name__})"]
    base = posixpath.dirname(rel)
    raw: list[tuple[Any, str]] = []
    problems: list[str] = []
    if posixpath.basename(rel) == "dvc.lock":
        stages = data.get("stages") if isinstance(data, dict) else None
        if not isinstance(stages, dict):
            return [], [f"{rel}: no 'stages' mapping"]
        for name, stage in stages.items():
            outs = stage.get("outs", []) if isinstance(stage, dict) else None
            if not isinstance(outs, list):
                problems.append(f"{rel}: stage {name}: malformed 'outs'")
                continue
            raw.extend((o, f"{rel}:{name}") for o in outs)
    else:
        outs = data.get("outs") if isinstance(data, dict) else None
        if not isinstance(outs, list):
            return [], [f"{rel}: no 'outs' list"]
        raw.extend((o, rel) for o in outs)
    try:
        with open(full + ".sig", "rb") as f:
            table = _parse_sidecar(f.read())
    except OSError:
        table = {}
    outputs: list[DvcOutput] = []
    for o, source in raw:
        out = _entry(o, base, source)
        if out is None:
            problems.append(f"{source}: malformed output entry")
            continue
        hit = table.get(out.path)
        if hit is not None and hit[2] and hit[2] == out.md5:
            out = replace(out, sha256=hit[0], file_sha256=hit[1], signature=rel + ".sig")
        elif hit is not None:
            problems.append(
                f"{rel}.sig: signs {out.path} with md5 {hit[2] or 'unknown'}, but {source} "
                f"records md5 {out.md5}: the data changed since it was signed; re-sign with "
                "`dvc-guard sign`"
            )
        outputs.append(out)
    return outputs, problems


def collect(root: Path) -> tuple[list[DvcOutput], list[str]]:
    """Every output declared under the DVC repository ``root``; plus problems found (per file).

    A malformed file is reported, not raised: lineage records problems, the gate decides.
    Sidecar digests are not verified here: ``dvc-guard verify`` and the server's gate do that.
    """
    outputs: list[DvcOutput] = []
    problems: list[str] = []
    key = str(root)
    if key not in _loaded:
        disk = _diskcache.load(root)
        with _cache_lock:
            for k, v in disk.items():
                _cache.setdefault(k, v)
            _loaded.add(key)
    files = _list_dvc_files(root)
    for rel in files:
        outs, probs = _outputs_of(root, rel)
        outputs.extend(outs)
        problems.extend(probs)
    if key in _dirty:
        with _cache_lock:
            _dirty.discard(key)
            mine = {os.path.join(root, r): _cache[os.path.join(root, r)] for r in files}
        _diskcache.save(root, mine)
    outputs.sort(key=lambda o: o.path)
    return outputs, problems
