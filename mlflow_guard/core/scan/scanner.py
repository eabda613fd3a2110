"""Scan files and directories for code a loader would run: the format dispatch.

Dispatch is by magic bytes first, then by name:

* zip archives (PyTorch, skops, ``.npz``): every member is dispatched in turn; PyTorch's raw
  storages (``*/data/<n>``) are skipped; skops' ``schema.json`` types are checked;
* gzip, bz2, xz, lzma, lz4 and zlib streams (joblib's compressors) are decompressed as streams,
  with a size cap, and their content dispatched;
* ``.npy``: object arrays' data is a pickle and is walked;
* pickles (protocol 2–5 magic, or any stream under a pickle-like name) are walked opcode by
  opcode; every import must be on the allowlist; a parse error is a finding (fail closed);
* ``.safetensors`` and ``.onnx`` are validated as such (a mismatch is a finding);
* any other file (data files too: an ``MLmodel`` may name ``model.json`` as the pickle to load)
  is walked as a possible protocol 0/1 pickle; if it does not parse, it is reported only if it
  would call something before failing (text fails on its first bytes).
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from mlflow_guard.core.scan import _formats, _streams, _walker
from mlflow_guard.core.scan.allowlist import NOT_ALLOWED, Allowlist
from mlflow_guard.core.scan.report import Finding, ScanReport

#: Default cap on bytes read from any one (decompressed) stream: 16 GiB.
DEFAULT_MAX_BYTES = 16 << 30
_MAX_DEPTH = 4
_MAX_NESTED_ZIP = 1 << 30

PICKLE_SUFFIXES = frozenset(
    {
        ".pkl", ".pickle", ".pck", ".pcl", ".p", ".joblib", ".jbl", ".dill", ".sav",
        ".pt", ".pth", ".ckpt", ".bin", ".cloudpickle",
    }
)  # fmt: skip
SAFE_DATA_SUFFIXES = frozenset(
    {
        ".json", ".yaml", ".yml", ".txt", ".md", ".csv", ".tsv", ".parquet", ".html",
        ".png", ".jpg", ".jpeg", ".svg", ".sig", ".pub", ".pem", ".toml", ".ini", ".cfg",
        ".lock", ".gitignore", ".dvc",
    }
)  # fmt: skip
_COMPRESSION_SUFFIXES = frozenset({".gz", ".bz2", ".xz", ".lzma", ".lz4", ".z", ".zlib"})
_NAME_HINTS = frozenset({"MLmodel", "requirements.txt", "conda.yaml", "python_env.yaml"})


@dataclass
class _Ctx:
    allowlist: Allowlist
    report: ScanReport
    max_bytes: int

    def find(self, path: str, reason: str, imports: tuple[str, ...] = ()) -> None:
        self.report.findings.append(Finding(path, reason, imports))


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def _pickle_like(name: str) -> bool:
    p = PurePosixPath(name)
    sfx = [s.lower() for s in p.suffixes]
    return bool(set(sfx) & PICKLE_SUFFIXES) or p.name in ("data.pkl", "constants.pkl")


def _scan_pickles(
    ctx: _Ctx, label: str, stream: IO[bytes], *, strict: bool, plain: str = "other"
) -> None:
    """Walk every pickle in ``stream`` (loaders may call ``pickle.load`` repeatedly).

    ``plain`` is the format counted when a non-strict stream turns out not to be a pickle.
    """
    first = True
    while True:
        if not first:
            byte = stream.read(1)
            if not byte:
                return
            stream = io.BufferedReader(_Prefixed(stream, byte), 1 << 16)
        res = _walker.walk(stream)
        if res.error and not (strict and first):
            # Not a pickle unless it got far enough to matter. An unknown file must reach a
            # call (text whose first line reads like a protocol-0 GLOBAL is not a payload);
            # data trailing a pickle must at least import something.
            harmless = not (res.calls or res.problems) if first else not res.acted
            if harmless:
                if first:
                    ctx.report.count(plain)
                return
        if first:
            ctx.report.count("pickle")
        _refuse_imports(ctx, label, "imports", ((g.module, g.name) for g in res.imports))
        for p in dict.fromkeys(res.problems):
            ctx.find(label, f"unsafe pickle construct: {p}")
        if res.error:
            ctx.find(
                label,
                f"malformed or truncated pickle ({res.error}); refusing what cannot be parsed",
            )
            return
        first = False


def _refuse_imports(ctx: _Ctx, label: str, what: str, pairs: Iterable[tuple[str, str]]) -> None:
    """Findings for the (module, name) pairs the allowlist refuses: not listed, or listed only
    through a wildcard while the module does not define the name (re-exports and the like)."""
    refused: dict[str, str] = {}
    for module, name in dict.fromkeys(pairs):
        why = ctx.allowlist.refusal(module, name)
        if why is not None:
            refused.setdefault(f"{module}.{name}", why)
    plain = tuple(g for g, why in refused.items() if why == NOT_ALLOWED)
    if plain:
        ctx.find(
            label,
            f"{what} outside the allowlist: {', '.join(plain)} (loading this file can run code)",
            plain,
        )
    wild = tuple(g for g, why in refused.items() if why != NOT_ALLOWED)
    if wild:
        ctx.find(
            label,
            f"{what} that an allowlist wildcard matches but the named module does not define: "
            + "; ".join(f"{g} ({refused[g]})" for g in wild)
            + ". A wildcard allows only classes and functions defined by a class or def "
            "statement in that module; a genuine pickle names the defining module. Loading this "
            "file can run code: list a name exactly only after reviewing what it resolves to",
            wild,
        )


class _Prefixed(io.RawIOBase):
    """``prefix`` followed by ``inner``: puts back bytes consumed while peeking."""

    def __init__(self, inner: IO[bytes], prefix: bytes) -> None:
        super().__init__()
        self._inner, self._prefix = inner, prefix
        self._pos = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
        else:
            data = self._inner.read(len(b))
            n = len(data)
            b[:n] = data
        self._pos += n
        return n


def _dispatch(ctx: _Ctx, label: str, name: str, raw: IO[bytes], size: int, depth: int) -> None:
    if depth > _MAX_DEPTH:
        ctx.find(label, f"archives or compression nested deeper than {_MAX_DEPTH} levels")
        return
    capped = _streams.CappedReader(raw, ctx.max_bytes)
    stream = io.BufferedReader(capped, 1 << 16)
    head = stream.peek(16)[:16]
    fmt = _streams.sniff(head)
    sfx = _suffix(name)
    try:
        if sfx == ".safetensors":
            _validated(ctx, label, "safetensors", _formats.check_safetensors, raw, stream, size)
        elif sfx == ".onnx":
            _validated(ctx, label, "onnx", _formats.check_onnx, raw, stream, size)
        elif fmt == "zip":
            _zip_from_stream(ctx, label, raw, stream, size, depth)
        elif fmt == "npy":
            _npy(ctx, label, stream)
        elif fmt in _streams.COMPRESSED:
            _compressed(ctx, label, name, fmt, stream, depth)
        elif fmt == "pickle" or _pickle_like(name):
            _scan_pickles(ctx, label, stream, strict=True)
        elif not head:
            ctx.report.count("data")
        else:  # an MLmodel may name any file as the pickle to load: walk data files too
            data = sfx in SAFE_DATA_SUFFIXES or PurePosixPath(name).name in _NAME_HINTS
            _scan_pickles(ctx, label, stream, strict=False, plain="data" if data else "other")
    except _streams.ScanLimit as e:
        ctx.find(label, f"{e}; raise the limit (max_bytes) if this file is expected to be large")
    except OSError as e:
        ctx.find(label, f"cannot read: {e}")


def _validated(ctx: _Ctx, label: str, fmt: str, check: object, raw: IO[bytes],
               stream: IO[bytes], size: int) -> None:  # fmt: skip
    seekable = raw if raw.seekable() else io.BytesIO(stream.read())
    seekable.seek(0)
    problems = check(seekable, size)  # type: ignore[operator]
    ctx.report.count(fmt)
    for p in problems:
        ctx.find(label, f"{p}; a file named *.{fmt} must be a valid {fmt} file")


def _npy(ctx: _Ctx, label: str, stream: IO[bytes]) -> None:
    header, problem = _formats.read_npy_header(stream)
    ctx.report.count("npy")
    if header is None:
        ctx.find(label, problem)
    elif _formats.npy_holds_pickle(header):
        _scan_pickles(ctx, label, stream, strict=True)


def _compressed(ctx: _Ctx, label: str, name: str, fmt: str, stream: IO[bytes],
                depth: int) -> None:  # fmt: skip
    inner_name = name[: -len(_suffix(name))] if _suffix(name) in _COMPRESSION_SUFFIXES else name
    ctx.report.count(fmt)
    try:
        dec = _streams.decompressor(fmt, stream)
    except ImportError:
        ctx.find(label, f"{fmt}-compressed, but the {fmt} package is not installed to inspect it")
        return
    try:
        _dispatch(ctx, f"{label}!{fmt}", inner_name, dec, -1, depth + 1)
    except (EOFError, zlib.error, ValueError, RuntimeError) as e:
        if fmt == "zlib" and not _pickle_like(name):
            ctx.report.formats["zlib"] -= 1
            ctx.report.count("data")
            return
        ctx.find(label, f"cannot decompress {fmt} stream ({e}); refusing what cannot be read")
    except OSError as e:  # gzip/lzma/bz2 data errors are OSError subclasses
        ctx.find(label, f"cannot decompress {fmt} stream ({e}); refusing what cannot be read")


def _zip_from_stream(ctx: _Ctx, label: str, raw: IO[bytes], stream: IO[bytes], size: int,
                     depth: int) -> None:  # fmt: skip
    if raw.seekable() and depth == 0:
        raw.seek(0)
        _zip(ctx, label, raw, depth)
        return
    data = stream.read(_MAX_NESTED_ZIP + 1)
    if len(data) > _MAX_NESTED_ZIP:
        ctx.find(label, "nested zip archive larger than 1 GiB; refusing to inspect it in memory")
        return
    _zip(ctx, label, io.BytesIO(data), depth)


def _zip(ctx: _Ctx, label: str, fileobj: IO[bytes], depth: int) -> None:
    try:
        zf = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as e:
        ctx.find(label, f"unreadable zip archive ({e}); refusing what cannot be inspected")
        return
    with zf:
        names = zf.namelist()
        torch = any(PurePosixPath(n).name == "data.pkl" for n in names)
        skops = "schema.json" in names
        ctx.report.count("torch-zip" if torch else "skops" if skops else "zip")
        for info in zf.infolist():
            if info.is_dir():
                continue
            mlabel = f"{label}!{info.filename}"
            parts = PurePosixPath(info.filename).parts
            if torch and len(parts) >= 2 and parts[-2] == "data" and parts[-1].isdigit():
                ctx.report.count("torch-storage")
                continue
            try:
                with zf.open(info) as member:
                    if skops and info.filename == "schema.json":
                        _skops_schema(ctx, mlabel, member)
                    else:
                        _dispatch(ctx, mlabel, info.filename, member, info.file_size, depth + 1)
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, zlib.error,
                    EOFError, ValueError, OSError) as e:  # fmt: skip
                ctx.find(mlabel, f"unreadable zip member ({e}); refusing what cannot be inspected")


def _skops_schema(ctx: _Ctx, label: str, member: IO[bytes]) -> None:
    schema, problem = _formats.load_schema(member)
    if problem:
        ctx.find(label, problem)
        return
    types: list[tuple[str, str]] = []
    problems: list[str] = []
    _formats.skops_types(schema, types, problems)
    _refuse_imports(ctx, label, "skops schema names types", types)
    for p in dict.fromkeys(problems):
        ctx.find(label, p)


def scan_file(
    path: str | os.PathLike[str],
    allowlist: Allowlist | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    label: str | None = None,
) -> ScanReport:
    """Scan one file without loading it.

    Args:
        path: the file.
        allowlist: allowed imports (default :meth:`Allowlist.default`).
        max_bytes: cap on bytes read from any one (decompressed) stream; beyond it → finding.
        label: name used in findings (default: the file name).

    Returns:
        The report; ``report.safe`` is False when anything would run code or cannot be parsed.
    """
    p = Path(path)
    ctx = _Ctx(allowlist or Allowlist.default(), ScanReport(), max_bytes)
    name = label or p.name
    if p.is_symlink() or not p.is_file():
        ctx.find(name, "not a regular file (symlink or special file); refusing to follow it")
        return ctx.report
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            _dispatch(ctx, name, p.name, f, size, 0)
    except OSError as e:
        ctx.find(name, f"cannot open: {e}")
        return ctx.report
    ctx.report.files_scanned = 1
    ctx.report.bytes_scanned = size
    return ctx.report


def scan_directory(
    path: str | os.PathLike[str],
    allowlist: Allowlist | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ScanReport:
    """Scan every file under ``path`` (recursively, symlinks not followed: each is a finding).

    A single file may be passed too. Findings name paths relative to ``path``.
    """
    root = Path(path)
    if root.is_file() and not root.is_symlink():
        return scan_file(root, allowlist, max_bytes=max_bytes)
    report = ScanReport()
    al = allowlist or Allowlist.default()
    if not root.is_dir():
        report.findings.append(Finding(str(root), "no such directory or file to scan"))
        return report
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        d = Path(dirpath)
        for link in [n for n in dirnames if (d / n).is_symlink()]:
            rel = (d / link).relative_to(root).as_posix()
            report.findings.append(Finding(rel, "symlinked directory; refusing to follow it"))
        for fname in sorted(filenames):
            f = d / fname
            rel = f.relative_to(root).as_posix()
            report.merge(scan_file(f, al, max_bytes=max_bytes, label=rel))
    return report
