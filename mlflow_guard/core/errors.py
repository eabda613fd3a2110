"""Error hierarchy shared by every layer of mlflow-guard.

Every failure a user can meet is a :class:`GuardError`: it carries a one-line summary, the
details needed to understand it (expected vs actual) and the next step, and it maps to one of
the documented exit codes. Cryptographic failures *raise*; rule outcomes are values
(:class:`mlflow_guard.core.decision.Decision`).

Exit codes: 0 ok; 1 policy violation or verification failure; 2 usage or configuration error;
3 unexpected internal error.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


class GuardError(Exception):
    """Base of every error mlflow-guard raises on purpose.

    Args:
        summary: one line saying what went wrong.
        details: further lines (expected vs actual, which file, which field).
        hint: the next step a person should take.
    """

    exit_code: int = EXIT_INTERNAL

    def __init__(self, summary: str, *, details: Sequence[str] = (), hint: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.details = list(details)
        self.hint = hint

    def diagnostics(self) -> str:
        """Human-readable text: summary, details and the next step."""
        lines = [self.summary]
        lines.extend(f"  - {d}" for d in self.details)
        if self.hint:
            lines.append(f"Next step: {self.hint}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        """Machine-readable form for ``--json`` output."""
        return {
            "error": type(self).__name__,
            "summary": self.summary,
            "details": self.details,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class UsageError(GuardError):
    """The command line or a call's arguments are wrong."""

    exit_code = EXIT_USAGE


class PolicyError(GuardError):
    """The policy (``guard.yaml``) or other configuration is invalid or missing."""

    exit_code = EXIT_USAGE


class KeyMaterialError(GuardError):
    """A key file is missing, unreadable, of an unsupported type or locked by a wrong passphrase."""

    exit_code = EXIT_USAGE


class PolicyViolation(GuardError):
    """A rule denied an action. Expected behaviour, not a bug."""

    exit_code = EXIT_VIOLATION


class VerificationError(GuardError):
    """Something could not be verified: the artefact must not be trusted."""

    exit_code = EXIT_VIOLATION


class SignatureInvalid(VerificationError):
    """A signature is malformed, does not verify, or is in the wrong format."""


class KeyNotTrusted(VerificationError):
    """The signing key is unknown, revoked, expired, or not trusted for this purpose."""


class ManifestMismatch(VerificationError):
    """The files on disk differ from the signed manifest.

    Attributes:
        missing: files listed in the signature but absent on disk.
        extra: files on disk that the signature does not list.
        changed: files whose digest differs.
    """

    def __init__(
        self,
        summary: str,
        *,
        missing: Sequence[str] = (),
        extra: Sequence[str] = (),
        changed: Sequence[str] = (),
        hint: str = "",
    ) -> None:
        self.missing = sorted(missing)
        self.extra = sorted(extra)
        self.changed = sorted(changed)
        details = [f"removed: {p}" for p in self.missing]
        details += [f"added: {p}" for p in self.extra]
        details += [f"changed: {p}" for p in self.changed]
        super().__init__(summary, details=details, hint=hint)

    def to_json(self) -> dict[str, object]:
        """Machine-readable form including the three file lists."""
        out = super().to_json()
        out.update({"removed": self.missing, "added": self.extra, "changed": self.changed})
        return out


class InternalError(GuardError):
    """An unexpected failure; a bug or an environment problem."""

    exit_code = EXIT_INTERNAL


class UnsafePath(VerificationError):
    """A path that could escape its root: symlink, special file, ``..`` or absolute path."""
