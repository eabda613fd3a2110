"""The hook path must not pay for MLflow, DVC, GitPython or pandas (a git hook starts cold)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HEAVY = ("mlflow", "dvc", "git", "pandas", "pyarrow", "scipy")


def test_verify_and_hook_import_no_heavy_library(dvc_repo: Path) -> None:
    code = (
        "import sys\n"
        "from dvc_hooks.cli import main\n"
        "rc = main(['hook', 'pre-commit'])\n"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "print(f\"RC={rc} BAD={','.join(bad)}\")\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=dvc_repo
    )
    last = proc.stdout.strip().splitlines()[-1]
    assert last == "RC=0 BAD=", proc.stdout + proc.stderr
