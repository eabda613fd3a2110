"""Read DVC's own files without importing DVC: ``*.dvc``, ``dvc.lock`` and ``.dir`` listings.

Formats (DVC 3):

- ``X.dvc``: ``outs: [{path, md5, size, nfiles?, hash: md5}]``, paths relative to the ``.dvc``
  file's folder. Entries without ``hash:`` are legacy DVC 2 records hashed with md5-dos2unix.
- ``dvc.lock`` (schema 2.0): ``stages: {name: {cmd, deps, outs: [...]}}``, paths relative to
  the lock file's folder.
- A directory output's md5 ends in ``.dir``; the listing ``[{md5, relpath}]`` is in the cache at
  ``<cache>/files/md5/xx/rest.dir`` (DVC 3) or ``<cache>/xx/rest.dir`` (DVC 2), and its own md5
  is the md5 of its bytes.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import posixpath
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mlflow_guard.core.errors import PolicyError, UnsafePath

if TYPE_CHECKING:  # the hook path imports no pydantic model before it needs one
    from mlflow_guard.core.dataset import HashKind

SIDECAR_SUFFIX = ".sig"
_MD5_HEX = frozenset("0123456789abcdef")


class DvcFileError(PolicyError):
    """A ``.dvc`` or ``dvc.lock`` file is malformed or uses an unsupported feature (exit 2)."""


@dataclass(frozen=True)
class DvcOut:
    """One output as DVC recorded it."""

    dvc_file: str
    path: str
    md5: str
    hash_kind: HashKind
    size: int | None
    nfiles: int | None

    @property
    def is_dir(self) -> bool:
        """Whether this is a directory output (md5 ends in ``.dir``)."""
        return self.md5.endswith(".dir")


def is_dvc_file(path: str) -> bool:
    """Whether ``path`` is a file this package signs: ``*.dvc`` or ``dvc.lock``."""
    return path.endswith(".dvc") or posixpath.basename(path) == "dvc.lock"


def sidecar_for(dvc_file: str) -> str:
    """Repository-relative path of the signature sidecar of a DVC file (``X.dvc.sig``)."""
    return dvc_file + SIDECAR_SUFFIX


_SHOW = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother = 2, 60, 60


def _show(value: Any) -> str:
    """A short ``repr`` for messages: YAML aliases make values that expand exponentially."""
    return _SHOW.repr(value)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader (C if built) that refuses a key repeated in one mapping, as DVC does."""


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            first = seen.setdefault(key, key_node)
        except TypeError:  # an unhashable key: construct_mapping says so
            break
        if first is not key_node:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {_show(key)} (DVC refuses a repeated key)",
                key_node.start_mark,
            )
    out: dict[Any, Any] = loader.construct_mapping(node)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _load_yaml(dvc_file: str, data: bytes) -> Any:
    try:
        return yaml.load(data, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as e:
        raise DvcFileError(
            f"{dvc_file} is not valid YAML",
            details=[str(e).replace("\n", " ")],
            hint="restore it from git or regenerate it with `dvc add` / `dvc repro`",
        ) from e


def _out(dvc_file: str, where: str, base: str, entry: Any) -> DvcOut:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise DvcFileError(
            f"{dvc_file}: {where}: expected a mapping with a 'path'",
            details=[f"actual: {_show(entry)}"],
            hint="restore the file from git or regenerate it with DVC",
        )
    raw = entry["path"]
    if "\0" in raw:
        raise DvcFileError(
            f"{dvc_file}: {where}: output path {raw!r} holds a NUL character",
            hint="restore the file from git or regenerate it with DVC",
        )
    if raw.startswith("/") or "://" in raw or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafePath(
            f"{dvc_file}: {where}: output {raw!r} is outside the repository",
            hint="external outputs cannot be signed; track data inside the repository",
        )
    path = posixpath.normpath(posixpath.join(base, raw))
    if path == ".." or path.startswith("../") or path == ".":
        raise UnsafePath(f"{dvc_file}: {where}: output path {raw!r} leaves the repository")
    md5 = entry.get("md5")
    if "files" in entry and md5 is None:
        raise DvcFileError(
            f"{dvc_file}: {where} ({raw}): cloud-versioned outputs ('files:') are not supported",
            hint="track the data with `dvc add` into the DVC cache (not a version_aware remote)",
        )
    if not isinstance(md5, str) or len(md5.removesuffix(".dir")) != 32:
        raise DvcFileError(
            f"{dvc_file}: {where} ({raw}): no valid md5 recorded",
            details=[f"actual md5: {_show(md5)}"],
            hint="run `dvc commit` (or `dvc add`) so DVC records the output's hash",
        )
    if not set(md5.removesuffix(".dir")) <= _MD5_HEX:
        raise DvcFileError(f"{dvc_file}: {where} ({raw}): md5 {md5!r} is not lower-case hex")
    kind: HashKind
    raw_kind = entry.get("hash", "md5-dos2unix")
    if raw_kind == "md5":
        kind = "md5"
    elif raw_kind == "md5-dos2unix":
        kind = "md5-dos2unix"
    else:
        raise DvcFileError(
            f"{dvc_file}: {where} ({raw}): unsupported hash kind {_show(raw_kind)}",
            hint="expected 'md5' (DVC 3) or no 'hash' key (legacy md5-dos2unix)",
        )
    size, nfiles = entry.get("size"), entry.get("nfiles")
    for name, val in (("size", size), ("nfiles", nfiles)):
        if val is not None and (not isinstance(val, int) or isinstance(val, bool) or val < 0):
            raise DvcFileError(f"{dvc_file}: {where} ({raw}): {name} {_show(val)} is not a count")
    return DvcOut(dvc_file, path, md5, kind, size, nfiles)


def parse(dvc_file: str, data: bytes) -> list[DvcOut]:
    """Outputs recorded in a ``.dvc`` or ``dvc.lock`` file (``dvc_file`` repo-relative).

    Raises:
        DvcFileError: not YAML, wrong shape, missing md5, unknown hash kind.
        UnsafePath: an output outside the repository.
    """
    doc = _load_yaml(dvc_file, data)
    base = posixpath.dirname(dvc_file)
    if not isinstance(doc, dict):
        raise DvcFileError(
            f"{dvc_file}: expected a YAML mapping, got {type(doc).__name__}",
            hint="restore it from git or regenerate it with DVC",
        )
    if posixpath.basename(dvc_file) == "dvc.lock":
        schema = doc.get("schema")
        if (
            not isinstance(schema, str | float)
            or str(schema) != "2.0"
            or not isinstance(doc.get("stages", {}), dict)
        ):
            raise DvcFileError(
                f"{dvc_file}: unsupported dvc.lock format (expected schema '2.0' with 'stages')",
                details=[f"actual schema: {_show(schema)}"],
                hint="regenerate it with DVC 3 (`dvc repro`)",
            )
        outs: list[DvcOut] = []
        for stage, body in (doc.get("stages") or {}).items():
            if not isinstance(body, dict) or not isinstance(body.get("outs", []), list):
                raise DvcFileError(f"{dvc_file}: stage {_show(stage)} is not a mapping with 'outs'")
            for i, e in enumerate(body.get("outs") or []):
                outs.append(_out(dvc_file, f"stages.{stage}.outs[{i}]", base, e))
        return outs
    if doc.get("wdir") not in (None, "."):
        raise DvcFileError(f"{dvc_file}: 'wdir' is not supported", hint="drop wdir from the file")
    raw_outs = doc.get("outs")
    if not isinstance(raw_outs, list) or not raw_outs:
        raise DvcFileError(
            f"{dvc_file}: no 'outs' list",
            hint="a .dvc file made by `dvc add` lists its output under 'outs'",
        )
    return [_out(dvc_file, f"outs[{i}]", base, e) for i, e in enumerate(raw_outs)]


def cache_dir(root: Path) -> Path:
    """DVC's cache folder: ``cache.dir`` from ``.dvc/config.local`` or ``.dvc/config``."""
    for name in ("config.local", "config"):
        cfg = configparser.ConfigParser()
        try:
            cfg.read(root / ".dvc" / name, encoding="utf-8")
        except configparser.Error:
            continue
        for section in ("cache", "'cache'"):
            if cfg.has_option(section, "dir"):
                d = Path(cfg.get(section, "dir"))
                return d if d.is_absolute() else (root / ".dvc" / d).resolve()
    return root / ".dvc" / "cache"


def cache_object(root: Path, md5: str) -> Path | None:
    """Path of a cache object by md5 (DVC 3 layout, then DVC 2), or ``None`` if absent."""
    cache = cache_dir(root)
    for p in (cache / "files" / "md5" / md5[:2] / md5[2:], cache / md5[:2] / md5[2:]):
        if p.is_file():
            return p
    return None


def dir_listing(root: Path, out: DvcOut) -> dict[str, str] | None:
    """``{relpath: md5}`` of a directory output from the cache, or ``None`` if not cached.

    Raises:
        DvcFileError: the listing is corrupt (not JSON, wrong shape, or md5 mismatch).
    """
    p = cache_object(root, out.md5)
    if p is None:
        return None
    data = p.read_bytes()
    if hashlib.md5(data, usedforsecurity=False).hexdigest() != out.md5.removesuffix(".dir"):
        raise DvcFileError(
            f"DVC cache listing {p} does not match md5 {out.md5} of {out.path}",
            hint="the DVC cache is corrupt; run `dvc pull --force` or `dvc add` again",
        )
    try:
        items = json.loads(data)
    except ValueError as e:
        raise DvcFileError(f"DVC cache listing {p} is not a .dir listing") from e
    if not isinstance(items, list):
        items = [items]
    listing: dict[str, str] = {}
    for i, item in enumerate(items):
        problem = _listing_entry_problem(item, listing)
        if problem is not None:
            raise DvcFileError(
                f"DVC cache listing {p} is not a valid .dir listing of {out.path}",
                details=[f"entry {i}: {problem}"],
                hint="the DVC cache or the .dvc record was tampered with; restore both from "
                "a trusted copy (`dvc pull --force`) or run `dvc add` again",
            )
        listing[item["relpath"].replace("\\", "/")] = item["md5"]
    return listing


def _listing_entry_problem(item: Any, seen: dict[str, str]) -> str | None:
    """What is wrong with one ``{relpath, md5}`` entry of a listing, or ``None``.

    The relpath must name a file inside the directory once; the md5 is a cache object name.
    """
    if not isinstance(item, dict):
        return f"expected an object with 'relpath' and 'md5', got {_show(item)}"
    rel, md5 = item.get("relpath"), item.get("md5")
    if not isinstance(rel, str) or not rel:
        return f"relpath {_show(rel)} is not a file name"
    if not isinstance(md5, str) or len(md5) != 32 or not set(md5) <= _MD5_HEX:
        return f"md5 {_show(md5)} of {rel!r} is not an md5 (32 lower-case hex digits)"
    name = rel.replace("\\", "/")
    parts = name.split("/")
    if name.startswith("/") or "\0" in name or any(x in ("", ".", "..") for x in parts):
        return f"relpath {rel!r} leaves the directory or is not normalized"
    if name in seen:
        return f"relpath {rel!r} is listed twice"
    return None
