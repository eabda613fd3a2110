"""Offline supply-chain check of a Python environment (OWASP ML06, corrupted packages).

pip writes a ``RECORD`` (path, ``sha256=<urlsafe base64>``, size) for every installed
distribution but never checks it again. This module re-verifies every recorded file, reports
files in site-packages no distribution lists (a dropped-in ``.pth`` runs code at every
interpreter start; a stray ``.py``/``.so`` shadows or extends a package), and checks that
requirement/lock files pin every requirement with ``--hash``. A vulnerability audit needs a
network database and is reported as "skipped (offline)", never as passed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from mlflow_guard.core.errors import PolicyViolation, UsageError

_SUSPECT = (".pth", ".so", ".py", ".pyd", ".dylib", ".egg-link")
_SKIP_DIRS = {"__pycache__"}
_MAX_DETAILS = 40


@dataclass
class EnvReport:
    """Findings of one environment check."""

    site_dirs: list[str]
    distributions: int = 0
    files_checked: int = 0
    modified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    unpinned: list[str] = field(default_factory=list)
    no_record: list[str] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)
    startup: list[str] = field(default_factory=list)
    editable: list[str] = field(default_factory=list)
    audit: str = "skipped (offline): no vulnerability database is consulted"

    @property
    def ok(self) -> bool:
        """Whether nothing was found (the audit, being skipped, does not count as a pass)."""
        return not (
            self.modified
            or self.missing
            or self.unlisted
            or self.unpinned
            or self.no_record
            or self.unverifiable
            or self.startup
        )

    def raise_if_failed(self) -> None:
        """Raise :class:`PolicyViolation` with every finding.

        Raises:
            PolicyViolation: any modified, missing or unlisted file, or an unpinned requirement.
        """
        if self.ok:
            return
        details = [f"modified (sha256 differs from RECORD): {p}" for p in self.modified]
        details += [f"missing (listed in RECORD): {p}" for p in self.missing]
        details += [f"unlisted (in no RECORD): {p}" for p in self.unlisted]
        details += [f"not hash-pinned: {p}" for p in self.unpinned]
        details += [f"no RECORD (nothing verifiable): {p}" for p in self.no_record]
        details += [f"unverifiable: {p}" for p in self.unverifiable]
        details += [f"runs or shadows code at start-up: {p}" for p in self.startup]
        if len(details) > _MAX_DETAILS:
            details = [*details[:_MAX_DETAILS], f"… and {len(details) - _MAX_DETAILS} more"]
        details.append(f"vulnerability audit: {self.audit}")
        raise PolicyViolation(
            f"environment check failed: {len(self.modified)} modified, "
            f"{len(self.missing)} missing, {len(self.unlisted)} unlisted file(s), "
            f"{len(self.unpinned)} unpinned requirement(s), "
            f"{len(self.no_record) + len(self.unverifiable)} unverifiable, "
            f"{len(self.startup)} start-up hook(s)",
            details=details,
            hint="reinstall the affected packages from a hash-pinned lock file "
            "(`pip install --require-hashes -r requirements.lock --force-reinstall`) and "
            "remove files nothing installed",
        )


@dataclass(frozen=True)
class Interpreter:
    """What the check needs to know about an interpreter."""

    site_dirs: list[str]
    search_path: list[str]
    stdlib_names: frozenset[str]


def interpreter_of(python: str | None) -> Interpreter:
    """site-packages folders, ``sys.path`` and standard-library module names of ``python``
    (``None``: this interpreter).

    Raises:
        UsageError: the interpreter cannot be run.
    """
    import sys

    if python is None:
        return Interpreter(default_site_dirs(), list(sys.path), frozenset(sys.stdlib_module_names))
    code = "import json, sys; print(json.dumps([sys.path, sorted(sys.stdlib_module_names)]))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, check=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise UsageError(f"cannot run {python}: {e}", hint="pass a Python interpreter") from e
    path, names = json.loads(out.stdout)
    sites = [p for p in path if p.endswith("site-packages")]
    return Interpreter(sites, path, frozenset(names))


def default_site_dirs() -> list[str]:
    """site-packages folders of this interpreter."""
    import sys

    return [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]


def _b64_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode("ascii")


_NO_HASH_OK = ("RECORD", "RECORD.jws", "RECORD.p7s")
_STARTUP = ("sitecustomize", "usercustomize")


def _prefix_of(site: Path) -> Path:
    """The environment folder holding ``site`` (``<prefix>/lib/pythonX.Y/site-packages``);
    pip's RECORD reaches ``<prefix>/bin``, ``share``, ``include`` with ``../../../``."""
    if site.parent.parent.name in ("lib", "lib64") and site.parent.name.startswith("python"):
        return site.parents[2]
    return site


def _hashless_ok(rel: str) -> bool:
    """RECORD lists itself (and its signatures) and the ``.pyc`` files pip compiled without a
    hash; any other entry without one would be "listed" yet never checked."""
    name = rel.rsplit("/", 1)[-1]
    if ".dist-info/" in rel and name in _NO_HASH_OK and rel.count("/") == 1:
        return True
    return "/__pycache__/" in f"/{rel}" and name.endswith(".pyc")


def _editable_target(dist: metadata.Distribution) -> str | None:
    try:
        info = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        return None
    if isinstance(info, dict) and (info.get("dir_info") or {}).get("editable"):
        return str(info.get("url", "?"))
    return None


def _top_level_module(rel: str) -> str | None:
    first = rel.split("/", 1)[0]
    if "/" in rel:
        return None if first.endswith((".dist-info", ".data")) or first == ".." else first
    if first.endswith((".py", ".pyc")):
        return first.rsplit(".", 1)[0]
    if first.endswith((".so", ".pyd")):
        return first.split(".", 1)[0]
    return None


def check_site(site: Path, report: EnvReport, stdlib: frozenset[str] = frozenset()) -> None:
    """Verify every distribution's RECORD in ``site`` and list unlisted suspect files.

    Beyond the hashes: a distribution without RECORD, an entry without a hash (other than
    RECORD itself and pip's ``.pyc``), an entry outside the environment or not a regular file
    (a FIFO or ``/dev/zero`` would hang the check), a top-level module named like a standard
    library module (``stdlib``), and ``sitecustomize``/``usercustomize`` are findings.
    Editable installs are listed: their code lives outside ``site`` and is not verified.
    """
    import stat

    listed: set[Path] = set()
    prefix = _prefix_of(site)
    for dist in metadata.distributions(path=[str(site)]):
        report.distributions += 1
        name = dist.metadata["Name"] or "?"
        files = dist.files if dist.read_text("RECORD") is not None else None
        if files is None:
            where = getattr(dist, "_path", None)
            report.no_record.append(f"{name} ({where})" if where else name)
            continue
        target = _editable_target(dist)
        if target:
            report.editable.append(f"{name}: {target}")
        for f in files:
            rel = str(f)
            full = Path(os.path.normpath(site / f))
            mod = _top_level_module(rel.replace("\\", "/"))
            if mod in stdlib or mod in _STARTUP:
                report.startup.append(f"{full} ({name}: module {mod!r})")
            if full != prefix and prefix not in full.parents:
                report.unverifiable.append(f"{full} ({name}: RECORD entry outside {prefix})")
                continue
            listed.add(full)
            if f.hash is None:
                if not _hashless_ok(rel):
                    report.unverifiable.append(f"{full} ({name}: RECORD entry without a hash)")
                continue
            if f.hash.mode != "sha256":
                report.modified.append(f"{full} ({name}: unsupported RECORD hash {f.hash.mode})")
                continue
            report.files_checked += 1
            try:
                if not stat.S_ISREG(os.stat(full).st_mode):
                    report.unverifiable.append(f"{full} ({name}: not a regular file)")
                    continue
                actual = _b64_sha256(full)
            except FileNotFoundError:
                report.missing.append(f"{full} ({name})")
                continue
            except OSError as e:
                report.modified.append(f"{full} ({name}: unreadable: {e.strerror})")
                continue
            if actual != f.hash.value:
                report.modified.append(f"{full} ({name})")
    for dirpath, dirnames, filenames in os.walk(site):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for fn in filenames:
            if fn.endswith(_SUSPECT):
                full = Path(os.path.normpath(os.path.join(dirpath, fn)))
                if full not in listed:
                    report.unlisted.append(str(full))


def check_search_path(entries: list[str], sites: list[str], report: EnvReport) -> None:
    """``sitecustomize``/``usercustomize`` anywhere on the interpreter's ``sys.path`` (the
    standard library folder, a ``PYTHONPATH`` entry): Python imports them at every start."""
    skip = {os.path.normpath(s) for s in sites}
    for entry in entries:
        d = os.path.normpath(entry or ".")
        if d in skip or not os.path.isdir(d):
            continue
        for mod in _STARTUP:
            for cand in (f"{mod}.py", f"{mod}/__init__.py"):
                if os.path.isfile(os.path.join(d, cand)):
                    report.startup.append(f"{os.path.join(d, cand)} (on sys.path)")


_REQ_LINE = re.compile(r"^\s*([A-Za-z0-9_.\-\[\],]+)\s*==\s*[^\s;\\]+")


def check_requirements(path: Path, report: EnvReport) -> None:
    """Every requirement in ``path`` must be ``name==version`` with at least one ``--hash``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from e
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            logical.append(buf.strip())
        buf = ""
    for req in logical:
        if req.startswith(("-", "--")) and not req.startswith("--hash"):
            continue  # options such as --index-url / -r are not requirements
        name = req.split()[0]
        if not _REQ_LINE.match(req):
            report.unpinned.append(f"{path}: {name} (no exact '==' version)")
        elif "--hash=sha256:" not in req:
            report.unpinned.append(f"{path}: {name} (no --hash=sha256:…)")


def find_requirement_files(root: Path) -> list[Path]:
    """``requirements*.txt`` and ``*.lock`` pip files at the repository root."""
    found = sorted(root.glob("requirements*.txt")) + sorted(root.glob("requirements*.lock"))
    return [p for p in found if p.is_file()]


def check(
    site_dirs: list[str],
    requirement_files: list[Path],
    *,
    check_site_packages: bool = True,
    search_path: list[str] | None = None,
    stdlib_names: frozenset[str] | None = None,
) -> EnvReport:
    """Run the whole offline check (``search_path``: the interpreter's ``sys.path``, searched
    for start-up hooks outside site-packages; ``stdlib_names``: default this interpreter's)."""
    import sys

    stdlib = frozenset(sys.stdlib_module_names) if stdlib_names is None else stdlib_names
    report = EnvReport(site_dirs=list(site_dirs))
    if check_site_packages:
        for d in site_dirs:
            check_site(Path(os.path.normpath(d)), report, stdlib)
        check_search_path(search_path or [], site_dirs, report)
    for r in requirement_files:
        check_requirements(r, report)
    for lst in (
        report.modified,
        report.missing,
        report.unlisted,
        report.unpinned,
        report.unverifiable,
        report.startup,
    ):
        lst.sort()
    return report
