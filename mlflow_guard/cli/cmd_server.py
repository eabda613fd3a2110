"""``mlflow-guard server``: start-up checks, then ``mlflow server --app-name guard``.

Does, once and before any worker starts, what MLflow does only for its own ``basic-auth`` app:
checks the Flask secret key (generating one shared by all workers when none is set), runs the
guard and user-store migrations and creates the configured admin user. Every option after
``--policy`` goes to ``mlflow server`` unchanged.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence

from mlflow_guard.core.errors import UsageError

NAME = "server"
HELP = "run the MLflow tracking server with guard (any `mlflow server` option is accepted)"


def register(p: argparse.ArgumentParser) -> None:
    """Add ``--policy`` and pass every other argument through to ``mlflow server``."""
    p.add_argument(
        "--policy",
        metavar="PATH",
        help="policy file (default: $MLFLOW_GUARD_POLICY or ./guard.yaml)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="do the start-up work and print the mlflow command instead of running it",
    )
    p.set_defaults(mlflow_args=[])
    parse_known = p.parse_known_args

    def _known(
        args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        ns, extra = parse_known(args, namespace)
        ns.mlflow_args = [*ns.mlflow_args, *extra]
        return ns, []

    p.parse_known_args = _known  # type: ignore[method-assign,assignment]
    p.set_defaults(func=_run)


def mlflow_command(args: list[str]) -> list[str]:
    """The ``mlflow server`` command line with the guard app."""
    if any(a == "--app-name" or a.startswith("--app-name=") for a in args):
        raise UsageError(
            "mlflow-guard server always runs the guard app; do not pass --app-name",
            hint="drop --app-name (or run `mlflow server --app-name guard` yourself)",
        )
    return [sys.executable, "-m", "mlflow", "server", "--app-name", "guard", *args]


def prepare(policy: str | None) -> dict[str, str]:
    """Start-up work; returns the environment variables the workers need."""
    from mlflow_guard.core.policy import find_policy
    from mlflow_guard.server import app as guard_app
    from mlflow_guard.server.config import load_config

    env = {"MLFLOW_GUARD_POLICY": str(find_policy(policy).resolve())}
    os.environ.update(env)
    if not os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(32)
        print(
            "mlflow-guard: MLFLOW_FLASK_SERVER_SECRET_KEY is not set; generated one for this "
            "run (set it yourself so several replicas share it)",
            file=sys.stderr,
        )
    config = load_config()
    guard_app.open_store(config).dispose()
    users = guard_app.open_users(config.users_database_uri)
    admin = guard_app.bootstrap_admin(users, required=True)
    if admin:
        print(f"mlflow-guard: admin user {admin!r} ready", file=sys.stderr)
    env[guard_app.BOOTSTRAPPED_ENV] = "1"
    return env


def _run(args: argparse.Namespace) -> int:
    extra = list(args.mlflow_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    cmd = mlflow_command(extra)
    env = prepare(args.policy)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    os.environ.update(env)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)  # noqa: S606 - replaces this process with mlflow server
    return 0  # pragma: no cover - execv does not return
