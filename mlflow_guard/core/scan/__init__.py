"""Model-file scanner (OWASP ML06/ML10): find code a loader would run, without loading anything.

Pickle-based formats (raw pickles, joblib with any compressor, PyTorch zip archives, MLflow
flavors' ``model.pkl``/``python_model.pkl``, numpy object arrays) are walked opcode by opcode
with :mod:`pickletools`; every import must be on an :class:`Allowlist`. skops' schema types are
checked against the same allowlist; safetensors and ONNX are validated as safe formats. The
scanner reports (:class:`ScanReport`); it does not raise on unsafe content, and it fails closed:
what it cannot parse or open is a finding.

Example::

    from mlflow_guard.core.scan import scan_directory
    report = scan_directory("model/")
    if not report.safe:
        for f in report.findings:
            print(f.path, f.reason)
"""

from __future__ import annotations

from mlflow_guard.core.scan.allowlist import DEFAULT_ENTRIES, HARD_DENY, Allowlist
from mlflow_guard.core.scan.report import Finding, ScanReport
from mlflow_guard.core.scan.scanner import DEFAULT_MAX_BYTES, scan_directory, scan_file

__all__ = [
    "DEFAULT_ENTRIES",
    "DEFAULT_MAX_BYTES",
    "HARD_DENY",
    "Allowlist",
    "Finding",
    "ScanReport",
    "scan_directory",
    "scan_file",
]
