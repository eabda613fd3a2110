"""The ``guard`` run context provider: lineage tags on every run MLflow starts.

Entry point ``mlflow.run_context_provider: guard``. MLflow instantiates this class during
``import mlflow``, so the constructor does nothing; at each ``start_run`` it collects the
lineage snapshot (git, DVC inputs, environment — a few milliseconds) and returns it as
``guard.lineage.*`` tags. It never raises: a failure becomes ``guard.lineage.status=error``.
Set ``MLFLOW_GUARD_LINEAGE=off`` to disable it.
"""

from __future__ import annotations

import logging
import os

from mlflow.tracking.context.abstract_context import RunContextProvider

_logger = logging.getLogger("mlflow_guard")
ENABLE_ENV = "MLFLOW_GUARD_LINEAGE"


class GuardRunContextProvider(RunContextProvider):
    """Adds ``guard.lineage.*`` tags at run start and installs the log-time signing hook."""

    def in_context(self) -> bool:
        """Active unless ``MLFLOW_GUARD_LINEAGE`` is ``off``; installs the log-time hook."""
        try:
            from mlflow_guard.plugins import logtime

            logtime.install()
        except Exception as e:  # never break start_run
            _logger.error("mlflow-guard: cannot install the log-time signing hook: %s", e)
        return os.environ.get(ENABLE_ENV, "on").strip().lower() not in ("off", "0", "false")

    def tags(self) -> dict[str, str]:
        """Lineage tags for the run being created."""
        try:
            from mlflow_guard.lineage import snapshot
            from mlflow_guard.plugins import logtime

            snap = snapshot.collect()
            logtime.remember_snapshot(snap)
            return snap.tags()
        except Exception as e:  # lineage must never fail a run
            return {
                "guard.lineage.status": "error",
                "guard.lineage.problems": f"{type(e).__name__}: {e}"[:4000],
            }
