"""``mlflow-guard serve MODEL_URI``: serve a verified model with auth, limits and signed answers.

Start-up refuses (exit 1, with the reason) when the model is unsigned, tampered, signed by an
untrusted key or contains unsafe pickle content; (exit 2) when the policy, TLS material or
signing key is unusable. Then it serves MLflow's scoring protocol (``/invocations``, ``/ping``,
``/health``, ``/version``) on one uvicorn process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow_guard.cli import _common
from mlflow_guard.core.errors import UsageError

if TYPE_CHECKING:
    from mlflow_guard.serving import ServeOptions

NAME = "serve"
HELP = "serve a signed model: verify and scan first, token auth, rate limits, signed responses"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options."""
    p.add_argument("model_uri", metavar="MODEL_URI", help="models:/, runs:/ or a local folder")
    _common.add_policy(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5001, help="port (default 5001)")
    p.add_argument("--tls-cert", metavar="PEM", help="server certificate (TLS)")
    p.add_argument("--tls-key", metavar="PEM", help="server private key (TLS)")
    p.add_argument("--tls-client-ca", metavar="PEM", help="require client certificates (mTLS)")
    p.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow plain HTTP on a non-loopback address (TLS terminated in front)",
    )
    p.add_argument("--signing-key", metavar="KEY", help="Ed25519 or ECDSA P-256 private key")
    _common.add_passphrase(p)
    p.add_argument(
        "--unsigned-responses",
        action="store_true",
        help="UNSAFE: serve without response signatures (no --signing-key)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--labels-only", action="store_true", help="return labels, not scores")
    out.add_argument("--top-k", type=int, metavar="N", help="return the N most likely labels")
    p.add_argument("--round", type=int, metavar="N", help="round scores to N decimals")
    p.add_argument("--rate", metavar="R", help="requests per client, e.g. 10/s or 600/m")
    p.add_argument("--budget", type=int, metavar="N", help="predictions per client per window")
    p.add_argument(
        "--budget-window", default="1d", metavar="DURATION", help="budget window (default 1d)"
    )
    p.add_argument("--database-uri", metavar="URI", help="token database (default: policy's)")
    p.add_argument(
        "--token-recheck",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="trust a token-store revision read for this long (0-60 s; default 0: read it for "
        "every request, revocation exact); revocation then takes effect within SECONDS",
    )
    p.set_defaults(func=_run)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _options(args: argparse.Namespace) -> ServeOptions:
    from mlflow_guard.core import keys
    from mlflow_guard.core.policy import parse_duration
    from mlflow_guard.serving import OutputPolicy, ServeOptions
    from mlflow_guard.serving.limits import parse_rate
    from mlflow_guard.serving.signing import algorithm_for

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1-65535, got {args.port}")
    if args.signing_key and args.unsigned_responses:
        raise UsageError("--signing-key and --unsigned-responses exclude each other")
    if not args.signing_key and not args.unsigned_responses:
        raise UsageError(
            "responses must be signed: pass --signing-key",
            hint="generate a key with `mlflow-guard keys generate`, or (unsafe) pass "
            "--unsigned-responses",
        )
    key = None
    if args.signing_key:
        pw = _common.passphrase(args.passphrase_env, prompt=args.passphrase_prompt)
        key = keys.load_private_key(args.signing_key, pw)
        algorithm_for(key)
    try:
        window = parse_duration(args.budget_window).total_seconds()
    except ValueError as e:
        raise UsageError(f"--budget-window: {e}", hint="e.g. 1h, 1d") from e
    if args.budget is not None and args.budget < 1:
        raise UsageError(f"--budget must be at least 1, got {args.budget}")
    return ServeOptions(
        signing_key=key,
        output=OutputPolicy(args.labels_only, args.top_k, args.round),
        rate=parse_rate(args.rate) if args.rate else None,
        budget=args.budget,
        budget_window=window,
    )


MAX_TOKEN_RECHECK = 60.0


def token_recheck(value: float) -> float:
    """Validate ``--token-recheck``.

    Raises:
        UsageError: negative, not finite or over :data:`MAX_TOKEN_RECHECK` seconds.
    """
    if not 0.0 <= value <= MAX_TOKEN_RECHECK:  # also refuses NaN
        raise UsageError(
            f"--token-recheck must be between 0 and {MAX_TOKEN_RECHECK:g} seconds, got {value}",
            hint="0 (the default) reads the revision for every request; 1 bounds revocation "
            "to one second",
        )
    return value


def _run(args: argparse.Namespace) -> int:
    from mlflow_guard import tls as tls_mod
    from mlflow_guard.serving import app as serving_app
    from mlflow_guard.serving.auth import RevisionReader, TokenAuth
    from mlflow_guard.store.config import open_store

    tls = tls_mod.TLSConfig(_path(args.tls_cert), _path(args.tls_key), _path(args.tls_client_ca))
    warning = tls_mod.check(args.host, tls, insecure_http=args.insecure_http)
    options = _options(args)
    recheck = token_recheck(args.token_recheck)
    loaded = serving_app.load_verified(args.model_uri, args.policy)
    store, policy = open_store(args.policy, args.database_uri)
    store.migrate()
    uri = args.database_uri or (policy.storage.database_uri if policy is not None else "")
    inline = store.dialect == "sqlite"  # SQLite reads cost less than a thread hand-off
    revision = RevisionReader.for_uri(uri, hold=inline)
    auth = TokenAuth(store.verify_token, revision, inline=inline, recheck=recheck)
    from mlflow_guard.core.policy import find_policy, load_policy
    from mlflow_guard.serving.model_trust import ModelKeyWatch

    policy_path = find_policy(args.policy)
    watch = ModelKeyWatch(load_policy(policy_path), policy_path, loaded.verified.signer_key_id)
    app = serving_app.build_app(loaded, auth, options, model_trust=watch.denial)
    v = loaded.verified
    scheme = "https" if tls.enabled else "http"
    print(
        f"mlflow-guard: verified {args.model_uri} ({v.files} files, signer {v.signer}, "
        f"root sha256:{v.root_digest}); scanned clean",
        file=sys.stderr,
    )
    if warning:
        print(warning, file=sys.stderr)
    print(f"mlflow-guard: serving on {scheme}://{args.host}:{args.port}", file=sys.stderr)
    sys.stderr.flush()
    serving_app.run(app, args.host, args.port, tls)
    return 0
