"""The ``dvc-guard`` command line (also ``mlflow-guard data …``).

Subcommands are the ``cmd_<name>.py`` modules of this package, discovered like those of
``mlflow-guard``; the exception boundary is :func:`mlflow_guard.cli.run`. Nothing here imports
MLflow or DVC: a git hook must start fast.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlflow_guard.cli import run

PROG = "dvc-guard"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dvc-guard``."""
    return run(argv, prog=PROG, package="dvc_hooks.cli")


if __name__ == "__main__":
    raise SystemExit(main())
