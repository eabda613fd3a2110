"""The core must not import MLflow, DVC or git: hooks must not pay for ``import mlflow``."""

from __future__ import annotations

import subprocess
import sys

CORE_MODULES = [
    "mlflow_guard.core.errors",
    "mlflow_guard.core.policy",
    "mlflow_guard.core.keys",
    "mlflow_guard.core.trust",
    "mlflow_guard.core.dsse",
    "mlflow_guard.core.intoto",
    "mlflow_guard.core.hashing",
    "mlflow_guard.core.oms",
    "mlflow_guard.core.oms_bundle",
]


def test_core_imports_no_adapter_library() -> None:
    code = (
        "import sys, importlib, pkgutil, mlflow_guard.core as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'mlflow_guard.core.'):\n"
        "    importlib.import_module(m.name)\n"
        f"for m in {CORE_MODULES!r}: importlib.import_module(m)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('mlflow', 'dvc', 'git'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"core imported adapter modules: {out}"
