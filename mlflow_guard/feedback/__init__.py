"""Feedback-data authentication (OWASP ML08): signed records, replay store, quarantine, skew.

Source side: :class:`FeedbackSigner`. Collector side: :class:`mlflow_guard.feedback.ingest.
Ingestor` (CLI ``mlflow-guard feedback ingest`` and the server endpoint
``POST /api/2.0/mlflow-guard/feedback`` from :mod:`mlflow_guard.feedback.http`).
"""

from __future__ import annotations

from mlflow_guard.feedback.signer import FeedbackSigner

__all__ = ["FeedbackSigner"]
