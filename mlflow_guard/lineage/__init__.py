"""Lineage of MLflow runs: git, DVC inputs, environment fingerprint, base models.

Collected at run start by the ``guard`` run context provider (tags under ``guard.lineage.``)
and written into the model's provenance attestation at log time. Collection never raises.
"""

from __future__ import annotations

from mlflow_guard.lineage.base_models import base_model, clear, record, recorded
from mlflow_guard.lineage.snapshot import ARTIFACT_PATH, TAG_PREFIX, Snapshot, collect

__all__ = [
    "ARTIFACT_PATH",
    "TAG_PREFIX",
    "Snapshot",
    "base_model",
    "clear",
    "collect",
    "record",
    "recorded",
]
