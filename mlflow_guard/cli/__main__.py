"""``python -m mlflow_guard.cli``."""

from mlflow_guard.cli import main

raise SystemExit(main())
