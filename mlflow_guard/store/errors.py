"""Errors of the guard state store."""

from __future__ import annotations

from mlflow_guard.core.errors import EXIT_INTERNAL, GuardError


class StoreError(GuardError):
    """The guard database cannot be read or written (unreachable, read-only, not migrated).

    The server turns this into a 503 and denies the request: a decision that cannot be recorded
    in the audit log is not made.
    """

    exit_code = EXIT_INTERNAL
