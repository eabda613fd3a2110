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
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert (PEM)")
    p.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="mutual TLS: require client certificates signed by this CA bundle",
    )
    p.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow plain HTTP on a non-loopback --host (TLS terminated in front of guard)",
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


def _option(args: list[str], *names: str) -> tuple[int, str] | None:
    """Index and value of the last ``--name VALUE`` / ``--name=VALUE`` in ``args``."""
    found: tuple[int, str] | None = None
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                found = (i, args[i + 1])
            elif a.startswith(n + "="):
                found = (i, a.split("=", 1)[1])
    return found


def apply_tls(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """Check the TLS options against ``--host`` and add the server flags to the mlflow args.

    Raises:
        UsageError / PolicyError: see :func:`mlflow_guard.tls.check`.
    """
    from pathlib import Path

    from mlflow_guard import tls

    given = _option(extra, "--host", "-h")
    # mlflow server also reads $MLFLOW_HOST; the check must see the address it will bind.
    host = given[1] if given else os.environ.get("MLFLOW_HOST") or "127.0.0.1"
    config = tls.TLSConfig(
        Path(args.tls_cert) if args.tls_cert else None,
        Path(args.tls_key) if args.tls_key else None,
        Path(args.tls_client_ca) if args.tls_client_ca else None,
    )
    warning = tls.check(host, config, insecure_http=args.insecure_http)
    if warning:
        print(f"mlflow-guard: {warning}", file=sys.stderr)
    if not config.enabled:
        return extra
    print(
        f"mlflow-guard: serving HTTPS on {host} ({'mutual TLS' if config.client_ca else 'TLS'})",
        file=sys.stderr,
    )
    out = list(extra)
    gunicorn = _option(out, "--gunicorn-opts")
    name, flags = (
        ("--gunicorn-opts", tls.gunicorn_args(config))
        if gunicorn
        else ("--uvicorn-opts", tls.uvicorn_args(config))
    )
    current = _option(out, name)
    if current is None:
        return [*out, name, tls.merge_opts(None, flags) or ""]
    i, value = current
    merged = tls.merge_opts(value, flags) or ""
    if out[i] == name:
        out[i + 1] = merged
    else:
        out[i] = f"{name}={merged}"
    return out


def _run(args: argparse.Namespace) -> int:
    extra = list(args.mlflow_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    extra = apply_tls(args, extra)
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
