"""``python -m dvc_hooks.cli``."""

from dvc_hooks.cli import main

raise SystemExit(main())
