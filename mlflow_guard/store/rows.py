"""Conversions between database rows and the store's values (tokens, audit entries)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mlflow_guard.core import audit as chain
from mlflow_guard.store import tokens as _tokens
from mlflow_guard.store.tokens import TokenInfo


def token_info(m: Any) -> TokenInfo:
    """A ``guard_tokens`` row as :class:`TokenInfo`."""
    created = _tokens.aware(m["created_at"])
    assert created is not None
    return TokenInfo(
        token_id=m["token_id"],
        user=m["user_name"],
        created_at=created,
        expires_at=_tokens.aware(m["expires_at"]),
        revoked_at=_tokens.aware(m["revoked_at"]),
        description=m["description"],
    )


def audit_row(e: chain.AuditEntry) -> dict[str, Any]:
    """An entry as a ``guard_audit`` row (time in its hashed string form, reasons as JSON)."""
    return {
        "seq": e.seq,
        "time": chain.format_time(e.time),
        "user_name": e.user,
        "action": e.action,
        "resource": e.resource,
        "outcome": e.outcome,
        "reasons": json.dumps(list(e.reasons), ensure_ascii=False),
        "request_id": e.request_id,
        "prev_hash": e.prev_hash,
        "entry_hash": e.entry_hash,
    }


def audit_entry(m: Any) -> chain.AuditEntry:
    """Rebuild an entry from a row without judging it (tampered rows must still be readable).

    A row whose time or reasons no longer parse gets an entry hash that cannot verify, so that
    chain verification reports it as modified. The outcome is kept as stored, valid or not.
    """
    entry_hash = str(m["entry_hash"])
    try:
        time = chain.parse_time(str(m["time"]))
        reasons = json.loads(m["reasons"])
        if not isinstance(reasons, list) or not all(isinstance(x, str) for x in reasons):
            raise ValueError("reasons is not a JSON list of strings")
    except (ValueError, TypeError) as e:
        time, reasons = datetime.fromtimestamp(0, UTC), [f"(unreadable row: {e})"]
        entry_hash = "unreadable:" + entry_hash
    return chain.AuditEntry.model_construct(
        seq=int(m["seq"]),
        time=time,
        user=str(m["user_name"]),
        action=str(m["action"]),
        resource=str(m["resource"]),
        outcome=str(m["outcome"]),  # type: ignore[arg-type]  # kept raw: tampering must show
        reasons=reasons,
        request_id=str(m["request_id"]),
        prev_hash=str(m["prev_hash"]),
        entry_hash=entry_hash,
    )


def checkpoint(r: Any) -> chain.Checkpoint:
    """A ``guard_audit_checkpoints`` row (an unparsable envelope becomes ``{}``: fails later)."""
    try:
        env = json.loads(r.envelope)
    except ValueError:
        env = {}
    created = _tokens.aware(r.created_at)
    assert created is not None
    return chain.Checkpoint(
        int(r.id), int(r.seq), str(r.entry_hash), created, env if isinstance(env, dict) else {}
    )
