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

_SUSPECT = (".pth", ".so", ".py", ".pyd", ".dylib")
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
    audit: str = "skipped (offline): no vulnerability database is consulted"

    @property
    def ok(self) -> bool:
        """Whether nothing was found (the audit, being skipped, does not count as a pass)."""
        return not (self.modified or self.missing or self.unlisted or self.unpinned)

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
        if len(details) > _MAX_DETAILS:
            details = [*details[:_MAX_DETAILS], f"… and {len(details) - _MAX_DETAILS} more"]
        details.append(f"vulnerability audit: {self.audit}")
        raise PolicyViolation(
            f"environment check failed: {len(self.modified)} modified, "
            f"{len(self.missing)} missing, {len(self.unlisted)} unlisted file(s), "
            f"{len(self.unpinned)} unpinned requirement(s)",
            details=details,
            hint="reinstall the affected packages from a hash-pinned lock file "
            "(`pip install --require-hashes -r requirements.lock --force-reinstall`) and "
            "remove files nothing installed",
        )


def site_dirs_of(python: str) -> list[str]:
    """The site-packages folders of another interpreter.

    Raises:
        UsageError: the interpreter cannot be run.
    """
    code = (
        "import json, sys; print(json.dumps([p for p in sys.path if p.endswith('site-packages')]))"
    )
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, check=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise UsageError(f"cannot run {python}: {e}", hint="pass a Python interpreter") from e
    dirs: list[str] = json.loads(out.stdout)
    return dirs


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


def check_site(site: Path, report: EnvReport) -> None:
    """Verify every distribution's RECORD in ``site`` and list unlisted suspect files."""
    listed: set[Path] = set()
    for dist in metadata.distributions(path=[str(site)]):
        report.distributions += 1
        files = dist.files
        name = dist.metadata["Name"] or "?"
        if files is None:
            report.no_record.append(name)
            continue
        for f in files:
            full = Path(os.path.normpath(site / f))
            listed.add(full)
            if f.hash is None:
                continue
            if f.hash.mode != "sha256":
                report.modified.append(f"{full} ({name}: unsupported RECORD hash {f.hash.mode})")
                continue
            report.files_checked += 1
            try:
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
    site_dirs: list[str], requirement_files: list[Path], *, check_site_packages: bool = True
) -> EnvReport:
    """Run the whole offline check."""
    report = EnvReport(site_dirs=list(site_dirs))
    if check_site_packages:
        for d in site_dirs:
            check_site(Path(os.path.normpath(d)), report)
    for r in requirement_files:
        check_requirements(r, report)
    for lst in (report.modified, report.missing, report.unlisted, report.unpinned):
        lst.sort()
    return report
