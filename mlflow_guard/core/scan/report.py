"""Scan results as values: a :class:`Finding` per problem and one :class:`ScanReport`.

The scanner *reports*; it never raises on unsafe content. Callers (the CLI, the registration
gate, the serving guard) decide what a finding means for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Finding:
    """One reason a file is not safe to load.

    Attributes:
        path: file path relative to the scanned root; members of archives and decompressed or
            nested streams are written ``outer!inner`` (e.g. ``model.pt!archive/data.pkl``).
        reason: what is wrong and what to do about it.
        imports: the offending imports (``module.name``), empty when the problem is not an
            import (a parse error, an unreadable archive, an invalid header).
    """

    path: str
    reason: str
    imports: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """Machine-readable form."""
        return {"path": self.path, "reason": self.reason, "imports": list(self.imports)}


@dataclass
class ScanReport:
    """Outcome of scanning a file or a directory.

    Attributes:
        findings: every problem found; empty means safe.
        files_scanned: regular files examined (archive members are not counted separately).
        bytes_scanned: bytes read from disk.
        formats: how many files (and archive members) were recognised per format.
    """

    findings: list[Finding] = field(default_factory=list)
    files_scanned: int = 0
    bytes_scanned: int = 0
    formats: dict[str, int] = field(default_factory=dict)

    @property
    def safe(self) -> bool:
        """True when there is no finding."""
        return not self.findings

    @property
    def imports(self) -> list[str]:
        """Sorted, de-duplicated offending imports across all findings."""
        return sorted({i for f in self.findings for i in f.imports})

    def count(self, fmt: str) -> None:
        """Record one file or member of format ``fmt``."""
        self.formats[fmt] = self.formats.get(fmt, 0) + 1

    def merge(self, other: ScanReport) -> None:
        """Add ``other``'s findings and counters to this report."""
        self.findings.extend(other.findings)
        self.files_scanned += other.files_scanned
        self.bytes_scanned += other.bytes_scanned
        for k, v in other.formats.items():
            self.formats[k] = self.formats.get(k, 0) + v

    def to_json(self) -> dict[str, object]:
        """Machine-readable form."""
        return {
            "safe": self.safe,
            "files_scanned": self.files_scanned,
            "bytes_scanned": self.bytes_scanned,
            "formats": dict(sorted(self.formats.items())),
            "imports": self.imports,
            "findings": [f.to_json() for f in self.findings],
        }
