"""The ``mlflow.app`` plugin module does nothing at import time."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_app_module_loads_no_mlflow_and_reads_no_config(tmp_path: object) -> None:
    code = (
        "import os, sys; os.environ['MLFLOW_GUARD_POLICY'] = '/nonexistent/guard.yaml'\n"
        "import mlflow_guard.server.app, mlflow_guard.core.access, mlflow_guard.core.decision\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'flask', 'fastapi')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_entry_point_names_the_factory() -> None:
    from importlib.metadata import entry_points

    eps = {e.name: e.value for e in entry_points(group="mlflow.app")}
    assert eps["guard"] == "mlflow_guard.server.app:create_app"
