"""Serving guard (``mlflow-guard serve``): verified model, token auth, limits, signed answers.

Public API: :func:`verify_response` (check a signed prediction), :func:`build_app` and
:func:`load_verified` (embed the guarded scoring app), :class:`ServeOptions`,
:class:`OutputPolicy`.
"""

from __future__ import annotations

from mlflow_guard.serving.app import LoadedModel, ServeOptions, build_app, load_verified
from mlflow_guard.serving.hardening import OutputPolicy
from mlflow_guard.serving.signing import VerifiedResponse, verify_response

__all__ = [
    "LoadedModel",
    "OutputPolicy",
    "ServeOptions",
    "VerifiedResponse",
    "build_app",
    "load_verified",
    "verify_response",
]
