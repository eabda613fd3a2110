"""DVC inputs of a repository, read from ``dvc.lock`` and ``.dvc`` files directly (no ``dvc``).

For every output: its path (relative to the DVC root), DVC's md5 and hash kind (``md5``, or
``md5-dos2unix`` for legacy entries without ``hash:``), size, file count for directories, and —
when the dataset-signature sidecar written by ``dvc-guard sign`` exists — the sha256 manifest
digest from it. DVC's md5 is a lookup key, never a security digest; the sha256 comes from the
signed manifest and is re-verified by the server's gate, not believed here.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SKIP_DIRS = {".git", ".dvc", ".venv", "node_modules", "__pycache__"}


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
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}


def find_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: cwd) that holds a ``.dvc`` folder."""
    p = Path(start or os.getcwd()).resolve()
    for d in (p, *p.parents):
        if (d / ".dvc").is_dir():
            return d
    return None


def _list_dvc_files(root: Path) -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.dvc"],
            cwd=root,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        return sorted({root / n for n in out.decode("utf-8", "surrogateescape").split("\0") if n})
    except (OSError, subprocess.SubprocessError):
        pass
    found: list[Path] = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in _SKIP_DIRS]
        found.extend(Path(d) / f for f in files if f.endswith(".dvc"))
    return sorted(found)


def _list_lock_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in _SKIP_DIRS]
        if "dvc.lock" in files:
            found.append(Path(d) / "dvc.lock")
    return sorted(found)


def _entry(out: Any, base: PurePosixPath, source: str) -> DvcOutput | None:
    if not isinstance(out, dict) or not isinstance(out.get("path"), str):
        return None
    md5 = out.get("md5") or out.get("etag") or out.get("checksum") or ""
    kind = str(out.get("hash") or "md5-dos2unix")
    size = out.get("size")
    nfiles = out.get("nfiles")
    path = (base / out["path"]).as_posix()
    return DvcOutput(
        path=path[2:] if path.startswith("./") else path,
        source=source,
        md5=str(md5),
        hash_kind=kind,
        size=size if isinstance(size, int) else None,
        nfiles=nfiles if isinstance(nfiles, int) else None,
    )


def _sidecar_digest(root: Path, decl: Path, out_path: str) -> tuple[str, str, str]:
    """(manifest sha256, file sha256, sidecar path) for ``out_path`` from its declaring file's
    sidecar (``X.dvc.sig`` / ``dvc.lock.sig``, written by ``dvc-guard sign``). Not verified here:
    the signature is checked by ``dvc-guard verify`` and by the server's gate."""
    sidecar = decl.with_name(decl.name + ".sig")
    try:
        raw = json.loads(sidecar.read_bytes())
        statement = json.loads(base64.b64decode(raw["payload"]))
        subjects = statement["subject"]
        outputs = (statement.get("predicate") or {}).get("outputs") or []
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "", "", ""
    manifest_sha = ""
    for s in subjects if isinstance(subjects, list) else []:
        if isinstance(s, dict) and s.get("name") == out_path:
            manifest_sha = str((s.get("digest") or {}).get("sha256", ""))
    file_sha = ""
    for o in outputs if isinstance(outputs, list) else []:
        if isinstance(o, dict) and o.get("path") == out_path and not o.get("is_dir"):
            files = o.get("files") or []
            if len(files) == 1 and isinstance(files[0], dict):
                file_sha = str(files[0].get("sha256", ""))
    if not manifest_sha:
        return "", "", ""
    return manifest_sha, file_sha, sidecar.relative_to(root).as_posix()


def _with_sidecar(root: Path, decl: Path, out: DvcOutput) -> DvcOutput:
    sha, file_sha, sig = _sidecar_digest(root, decl, out.path)
    return replace(out, sha256=sha, file_sha256=file_sha, signature=sig)


def collect(root: Path) -> tuple[list[DvcOutput], list[str]]:
    """Every output declared under the DVC repository ``root``; plus problems found (per file).

    A malformed file is reported, not raised: lineage records problems, the gate decides.
    """
    outputs: list[DvcOutput] = []
    problems: list[str] = []
    for f in _list_dvc_files(root):
        rel = f.relative_to(root).as_posix()
        try:
            data = yaml.load(f.read_bytes(), Loader=_Loader)  # noqa: S506 - CSafeLoader
        except (OSError, yaml.YAMLError) as e:
            problems.append(f"{rel}: unreadable ({type(e).__name__})")
            continue
        outs = data.get("outs") if isinstance(data, dict) else None
        if not isinstance(outs, list):
            problems.append(f"{rel}: no 'outs' list")
            continue
        base = PurePosixPath(rel).parent
        for o in outs:
            out = _entry(o, base, rel)
            if out is None:
                problems.append(f"{rel}: malformed output entry")
                continue
            outputs.append(_with_sidecar(root, f, out))
    for f in _list_lock_files(root):
        rel = f.relative_to(root).as_posix()
        try:
            data = yaml.load(f.read_bytes(), Loader=_Loader)  # noqa: S506 - CSafeLoader
        except (OSError, yaml.YAMLError) as e:
            problems.append(f"{rel}: unreadable ({type(e).__name__})")
            continue
        stages = data.get("stages") if isinstance(data, dict) else None
        if not isinstance(stages, dict):
            problems.append(f"{rel}: no 'stages' mapping")
            continue
        base = PurePosixPath(rel).parent
        for name, stage in stages.items():
            outs = stage.get("outs", []) if isinstance(stage, dict) else None
            if not isinstance(outs, list):
                problems.append(f"{rel}: stage {name}: malformed 'outs'")
                continue
            for o in outs:
                out = _entry(o, base, f"{rel}:{name}")
                if out is None:
                    problems.append(f"{rel}: stage {name}: malformed output entry")
                    continue
                outputs.append(_with_sidecar(root, f, out))
    outputs.sort(key=lambda o: o.path)
    return outputs, problems
