"""Model-file scanning as the adapters use it: the policy's allowlist, plus a second opinion.

mlflow-guard's own allowlist scanner (:mod:`mlflow_guard.core.scan`) decides. When the
``picklescan`` package is installed it is run as a **second opinion**: every import picklescan
calls dangerous that our scanner did not already report becomes a finding too (the stricter
verdict wins), and a picklescan failure is reported as a finding rather than ignored. Our
scanner is the primary because picklescan misses crafted payloads (compressed joblib,
``importlib``, ``numpy.load``, ...); picklescan is kept because two independent parsers
disagreeing is itself worth a look.
"""

from __future__ import annotations

from pathlib import Path

from mlflow_guard.core.policy import Policy
from mlflow_guard.core.scan import (
    DEFAULT_MAX_BYTES,
    Allowlist,
    Finding,
    ScanReport,
    scan_directory,
)


def second_opinion(path: Path, report: ScanReport) -> ScanReport:
    """Add picklescan's dangerous findings to ``report`` (no-op when picklescan is absent)."""
    try:
        from picklescan import scanner as ps
    except ImportError:
        return report
    try:
        res = ps.scan_directory_path(str(path)) if path.is_dir() else ps.scan_file_path(str(path))
    except Exception as e:  # a crash of the second opinion must not pass anything
        report.findings.append(
            Finding("(picklescan)", f"picklescan second opinion failed: {type(e).__name__}: {e}")
        )
        return report
    ours = set(report.imports)
    for g in res.globals:
        name = f"{g.module}.{g.name}"
        if g.safety == ps.SafetyLevel.Dangerous and name not in ours:
            report.findings.append(
                Finding(
                    "(picklescan)",
                    f"picklescan second opinion: dangerous import {name}",
                    (name,),
                )
            )
    return report


def scan_model(
    path: Path, policy: Policy | None = None, *, extra_allow: list[str] | None = None
) -> ScanReport:
    """Scan with the policy's allowlist and size cap, then ask picklescan for a second opinion."""
    section = policy.scan if policy is not None else None
    allowlist = section.allowlist() if section is not None else Allowlist.default()
    if extra_allow:
        allowlist = allowlist.extend(extra_allow)
    cap = section.max_bytes if section is not None else DEFAULT_MAX_BYTES
    report = scan_directory(path, allowlist, max_bytes=cap)
    return second_opinion(path, report)
