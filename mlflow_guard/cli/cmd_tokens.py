"""``mlflow-guard tokens``: create, list and revoke API tokens (``Authorization: Bearer``)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mlflow_guard.cli import _common
from mlflow_guard.core.errors import UsageError
from mlflow_guard.core.policy import parse_duration

if TYPE_CHECKING:
    from mlflow_guard.store import GuardStore
NAME = "tokens"
HELP = "create, list and revoke API tokens (Bearer tokens for CI)"
DEFAULT_EXPIRY = "90d"


def _add_db(p: argparse.ArgumentParser) -> None:
    _common.add_policy(p)
    p.add_argument(
        "--database-uri",
        metavar="URI",
        help="guard database (default: storage.database_uri of the policy)",
    )
    _common.add_json(p)


def register(p: argparse.ArgumentParser) -> None:
    """Add ``tokens create``, ``tokens list`` and ``tokens revoke``."""
    sub = p.add_subparsers(dest="tokens_command", metavar="SUBCOMMAND")
    c = sub.add_parser("create", help="create a token for USER; the secret is shown once")
    c.add_argument("user", metavar="USER", help="MLflow user the token authenticates as")
    c.add_argument(
        "--expires",
        default=DEFAULT_EXPIRY,
        metavar="DURATION",
        help=f"lifetime such as 12h, 30d, 2w, or 'never' (default: {DEFAULT_EXPIRY})",
    )
    c.add_argument("--description", default="", help="what the token is for")
    _add_db(c)
    c.set_defaults(func=_create)
    ls = sub.add_parser("list", help="list tokens (never their secrets)")
    ls.add_argument("--user", help="only this user's tokens")
    _add_db(ls)
    ls.set_defaults(func=_list)
    r = sub.add_parser("revoke", help="revoke a token at once on every server replica")
    r.add_argument("token_id", metavar="TOKEN_ID", help="id shown by `tokens list`")
    _add_db(r)
    r.set_defaults(func=_revoke)
    p.set_defaults(func=lambda a: _help(p))


def _open(args: argparse.Namespace) -> GuardStore:
    from mlflow_guard.store.config import open_store

    store, _ = open_store(args.policy, args.database_uri)
    return store


def _create(args: argparse.Namespace) -> int:
    expires_at = None
    if args.expires != "never":
        try:
            expires_at = datetime.now(UTC) + parse_duration(args.expires)
        except ValueError as e:
            raise UsageError(f"--expires: {e}", hint="pass e.g. 30d, 12h or never") from e
    store = _open(args)
    store.migrate()
    token_id, secret = store.create_token(args.user, expires_at, args.description)
    if args.json:
        _common.print_json(
            {
                "ok": True,
                "token_id": token_id,
                "user": args.user,
                "secret": secret,
                "expires_at": expires_at.isoformat() if expires_at else None,
            }
        )
    else:
        print(f"token id: {token_id}")
        print(f"user:     {args.user}")
        print(f"expires:  {expires_at.isoformat() if expires_at else 'never'}")
        print(f"secret:   {secret}")
        print("The secret is shown once; only its sha256 is stored. Use it as")
        print("  MLFLOW_TRACKING_TOKEN=<secret>   (sent as Authorization: Bearer <secret>)")
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _open(args)
    infos = store.list_tokens(args.user)
    if args.json:
        _common.print_json({"ok": True, "tokens": [i.to_json() for i in infos]})
        return 0
    if not infos:
        print("no tokens")
        return 0
    print(f"{'TOKEN ID':<18}{'USER':<20}{'STATUS':<9}{'EXPIRES':<27}DESCRIPTION")
    for i in infos:
        exp = i.expires_at.isoformat(timespec="seconds") if i.expires_at else "never"
        print(f"{i.token_id:<18}{i.user:<20}{i.status():<9}{exp:<27}{i.description}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    store = _open(args)
    info = store.get_token(args.token_id)
    if info is None:
        raise UsageError(
            f"no token with id {args.token_id!r}", hint="`mlflow-guard tokens list` shows the ids"
        )
    revoked = store.revoke_token(args.token_id)
    if args.json:
        _common.print_json({"ok": True, "token_id": args.token_id, "revoked_now": revoked})
    elif revoked:
        print(f"revoked token {args.token_id} of {info.user}")
    else:
        print(f"token {args.token_id} was already revoked")
    return 0


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2
