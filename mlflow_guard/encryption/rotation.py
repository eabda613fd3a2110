"""KEK rotation and status over a local artifact root, deciding by what the ciphertext proves.

Rotation: add a new primary key, re-wrap every file's data key under it, then check every file
again and retire the old keys only if each one now unwraps with the primary alone. Which key
wraps a data key is read from the wrapped keyset (Tink output prefix) and proven by unwrapping
it; the header's ``kek_key_id`` is only compared with it, and a header that lies is reported.
A file whose data key does not unwrap at all keeps every old key in the keyset (it might be
repairable, and retiring would make that impossible).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mlflow_guard.core.errors import UsageError
from mlflow_guard.encryption import envelope
from mlflow_guard.encryption.kek import LocalKeysetKEK


@dataclass(frozen=True)
class Mismatch:
    """A header naming another KEK key than the one that really wraps the data key."""

    path: str
    header_key_id: int
    actual_key_id: int | None


@dataclass
class RotationReport:
    """What a rotation did; ``ok`` only when nothing needs a person's attention."""

    new_primary_key_id: int
    rewrapped: int = 0
    current: int = 0
    plaintext: int = 0
    not_regular: list[str] = field(default_factory=list)
    header_mismatch: list[Mismatch] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    retired: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No lying header and no file left behind."""
        return not self.header_mismatch and not self.failed


@dataclass
class StatusReport:
    """Files per real wrapping key, plaintext files, lying headers and unreadable containers."""

    by_key: dict[str, int] = field(default_factory=dict)
    plaintext: int = 0
    not_regular: list[str] = field(default_factory=list)
    header_mismatch: list[Mismatch] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No lying header and no malformed container."""
        return not self.header_mismatch and not self.failed


def _raise(e: OSError) -> None:
    raise e


def walk(root: str | os.PathLike[str]) -> Iterator[tuple[Path, bool]]:
    """Every entry below ``root`` as ``(path, is_regular_file)``, hidden names included.

    Unreadable directories raise (a silently skipped directory would lose its files when the
    old key is retired). Symlinks and special files are never followed or opened.

    Raises:
        UsageError: ``root`` is not a directory.
        OSError: a directory cannot be listed.
    """
    r = Path(root)
    if not r.is_dir():
        raise UsageError(f"{r} is not a directory", hint="pass the local artifact root")
    for d, _dirs, files in os.walk(r, onerror=_raise):
        for name in sorted(files):
            p = Path(d) / name
            yield p, stat.S_ISREG(os.lstat(p).st_mode)


def _mismatch(info: envelope.WrapInfo) -> Mismatch:
    return Mismatch(info.path, info.header_key_id, info.actual_key_id)


def _containers(root: str | os.PathLike[str], out: StatusReport | RotationReport) -> Iterator[Path]:
    """The encrypted containers under ``root``; other files are counted in ``out``."""
    for p, regular in walk(root):
        if not regular:
            out.not_regular.append(str(p))
        elif not envelope.is_encrypted(p):
            out.plaintext += 1
        else:
            yield p


def status(root: str | os.PathLike[str]) -> StatusReport:
    """Count containers by the key that really wraps their data key (no KEK needed)."""
    out = StatusReport()
    for p in _containers(root, out):
        try:
            info = envelope.inspect(p)
        except envelope.DecryptionError as e:
            out.failed[str(p)] = e.summary
            continue
        key = "unknown" if info.actual_key_id is None else str(info.actual_key_id)
        out.by_key[key] = out.by_key.get(key, 0) + 1
        if info.header_lies:
            out.header_mismatch.append(_mismatch(info))
    return out


def rotate(
    root: str | os.PathLike[str], kek: LocalKeysetKEK, *, keep_old: bool = False
) -> RotationReport:
    """Add a primary key, re-wrap every container under ``root``, retire old keys if safe.

    Old keys are retired only when no file failed and a second pass finds every container
    wrapped by the new primary (proved by unwrapping); otherwise they stay and the report names
    the files. Lying headers are corrected by the re-wrap and reported.
    """
    old = sorted(kek.key_ids)
    out = RotationReport(kek.add_primary())
    for p in _containers(root, out):
        try:
            info = envelope.inspect(p)
            if info.header_lies:
                out.header_mismatch.append(_mismatch(info))
            if envelope.rewrap(p, kek):
                out.rewrapped += 1
            else:
                out.current += 1
        except envelope.DecryptionError as e:
            out.failed[str(p)] = e.summary
    # Second pass: files written meanwhile by a process holding the old keyset, or changed
    # behind our back, must not lose their key.
    for p, regular in walk(root):
        if not regular or str(p) in out.failed or not envelope.is_encrypted(p):
            continue
        try:
            if not envelope.is_current(p, kek):
                info = envelope.inspect(p)
                out.failed[str(p)] = (
                    f"still wrapped by KEK key {info.actual_key_id} after the re-wrap "
                    "(written or replaced during the rotation?)"
                )
        except envelope.DecryptionError as e:
            out.failed[str(p)] = e.summary
    if keep_old or out.failed:
        out.kept = old
    else:
        kek.retire(set(old))
        out.retired = old
    return out
