"""Keep the feedback dataset a signed DVC output after ingestion.

``dvc add`` records the grown file in ``INTO.dvc``; then the DVC hooks' signer
(:func:`dvc_hooks.manifests.sign_dvc_file`) re-signs its dataset manifest (sidecar
``INTO.dvc.sig``) with the ``dataset`` key, so ``dvc-guard verify`` keeps passing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlflow_guard.core import keys
from mlflow_guard.core.errors import UsageError


def add_and_resign(into: Path, signer: keys.Signer) -> tuple[Path, Path]:
    """``dvc add`` the dataset and re-sign its ``.dvc`` file; return (dvc file, sidecar).

    Raises:
        UsageError: not inside a git+DVC repository, or ``dvc add`` failed.
    """
    from dvc_hooks import gitutil, manifests

    root = gitutil.repo_root(into.resolve().parent)
    rel = into.resolve().relative_to(root.resolve()).as_posix()
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "add", "-q", rel],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise UsageError(
            f"`dvc add {rel}` failed (exit {proc.returncode})",
            details=(proc.stderr or proc.stdout).strip().splitlines()[-5:],
            hint="run `dvc init` in the repository, or ingest without --dvc",
        )
    sidecar, _, _ = manifests.sign_dvc_file(root, rel + ".dvc", signer)
    return root / (rel + ".dvc"), sidecar
