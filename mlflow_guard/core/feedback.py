"""Checking one feedback record: authentic, fresh, small enough. Pure: no I/O but env lookups.

Uniqueness (replay store), quotas and skew need state or the whole batch and live in
:mod:`mlflow_guard.feedback.ingest`; this module decides everything that depends on the record
alone. Outcomes are values: a :class:`~mlflow_guard.core.feedback_records.Record` when it passes,
a :class:`Rejection` naming the reason otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from cryptography.exceptions import InvalidSignature

from mlflow_guard.core import feedback_records as fr
from mlflow_guard.core import keys
from mlflow_guard.core.errors import KeyNotTrusted
from mlflow_guard.core.policy import Policy, Purpose
from mlflow_guard.core.policy.feedback import FeedbackPolicy
from mlflow_guard.core.trust import TrustStore


class Reason(StrEnum):
    """Why a record or batch was quarantined."""

    MALFORMED = "malformed"
    TOO_LARGE = "too-large"
    BATCH_TOO_LARGE = "batch-too-large"
    UNKNOWN_SOURCE = "unknown-source"
    UNTRUSTED_KEY = "untrusted-key"
    BAD_SIGNATURE = "bad-signature"
    STALE = "stale"
    FUTURE = "future"
    REPLAY = "replay"
    QUOTA = "quota"
    SKEW = "skew"
    UNCOMMITTED = "uncommitted"
    """In the dataset file past its last committed size (an append whose commit failed)."""


@dataclass(frozen=True)
class Rejection:
    """A record that must not reach training data, and why."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class _AsymmetricSource:
    check: Callable[[bytes, bytes], None]  # (signature, data); raises InvalidSignature
    key_id: str
    alg: str


@dataclass(frozen=True)
class _HmacSource:
    secret: bytes


class SourceKeys:
    """Per-source verification material, resolved once (trust checked at ``at``).

    A source that is listed but unusable (revoked, expired or wrong-purpose key; HMAC secret
    variable unset or too short) maps to a :class:`Rejection`, so its records are quarantined
    with a message saying what to fix.
    """

    def __init__(self, entries: Mapping[str, _AsymmetricSource | _HmacSource | Rejection]) -> None:
        self._entries = dict(entries)

    @classmethod
    def from_policy(
        cls,
        policy: Policy,
        *,
        trust: TrustStore | None = None,
        environ: Mapping[str, str] | None = None,
        at: datetime | None = None,
    ) -> SourceKeys:
        """Resolve every feedback source of ``policy`` (trust store built from it if not given)."""
        fp = policy.feedback
        env = os.environ if environ is None else environ
        store = trust if trust is not None else TrustStore.from_policy(policy)
        by_name = {e.name: e for e in store.entries}
        out: dict[str, _AsymmetricSource | _HmacSource | Rejection] = {}
        for name in fp.sources:
            entry = by_name.get(name)
            if entry is None:
                out[name] = Rejection(Reason.UNTRUSTED_KEY, f"source {name!r} has no policy key")
                continue
            try:
                store.check(entry, Purpose.FEEDBACK, at)
            except KeyNotTrusted as e:
                out[name] = Rejection(Reason.UNTRUSTED_KEY, e.summary)
                continue
            out[name] = _AsymmetricSource(
                entry.verifier.primitive(), entry.key_id, keys.algorithm_name(entry.public_key)
            )
        for h in fp.hmac_sources:
            value = env.get(h.secret_env)
            if not value:
                out[h.id] = Rejection(
                    Reason.UNTRUSTED_KEY,
                    f"HMAC secret for source {h.id!r} is not set: export {h.secret_env}",
                )
                continue
            try:
                out[h.id] = _HmacSource(fr.decode_secret(value))
            except ValueError as e:
                out[h.id] = Rejection(Reason.UNTRUSTED_KEY, f"${h.secret_env}: {e}")
        return cls(out)

    def names(self) -> list[str]:
        """Every configured source name."""
        return sorted(self._entries)

    def check_signature(self, rec: fr.Record) -> Rejection | None:
        """``None`` if the record's signature is valid for its source; a rejection otherwise."""
        src = self._entries.get(rec.source)
        if src is None:
            return Rejection(
                Reason.UNKNOWN_SOURCE,
                f"source {rec.source!r} is not a feedback source in the policy "
                "(feedback.sources / feedback.hmac_sources)",
            )
        if isinstance(src, Rejection):
            return src
        if isinstance(src, _HmacSource):
            if rec.alg != fr.ALG_HMAC:
                return Rejection(
                    Reason.BAD_SIGNATURE, f"source {rec.source!r} signs with hmac-sha256"
                )
            if not fr.hmac_valid(rec, src.secret):
                return Rejection(Reason.BAD_SIGNATURE, "HMAC-SHA256 tag does not match")
            return None
        if rec.alg != src.alg:
            return Rejection(
                Reason.BAD_SIGNATURE, f"source {rec.source!r} signs with {src.alg}, not {rec.alg}"
            )
        if rec.keyid and rec.keyid != src.key_id:
            return Rejection(
                Reason.UNTRUSTED_KEY,
                f"signed by key {rec.keyid[:16]}…, but source {rec.source!r} has key "
                f"{src.key_id[:16]}…",
            )
        try:
            src.check(rec.sig, rec.canonical())
        except InvalidSignature:
            return Rejection(
                Reason.BAD_SIGNATURE,
                f"signature does not verify with the key of source {rec.source!r}",
            )
        return None


def freshness(ts: int, now: float, fp: FeedbackPolicy) -> Rejection | None:
    """``None`` if ``ts`` is within ``tolerance`` in the past and ``clock_skew`` in the future."""
    age = now - ts
    if age > fp.tolerance.total_seconds():
        return Rejection(
            Reason.STALE,
            f"timestamp {_iso(ts)} is {int(age)}s old; tolerance is "
            f"{int(fp.tolerance.total_seconds())}s",
        )
    if -age > fp.clock_skew.total_seconds():
        return Rejection(
            Reason.FUTURE,
            f"timestamp {_iso(ts)} is {int(-age)}s in the future; clock skew allowed is "
            f"{int(fp.clock_skew.total_seconds())}s",
        )
    return None


def _iso(ts: int) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return str(ts)


class RecordChecker:
    """Checks raw records against one policy at one instant (size, shape, signature, freshness).

    Args:
        fp: the policy's ``feedback`` section.
        sources: resolved source keys.
    """

    def __init__(self, fp: FeedbackPolicy, sources: SourceKeys) -> None:
        self.fp = fp
        self.sources = sources

    def check(
        self, raw: bytes, now: float, *, check_freshness: bool = True
    ) -> fr.Record | Rejection:
        """Check one raw line (without its newline)."""
        if len(raw) > self.fp.max_record_bytes:
            return Rejection(
                Reason.TOO_LARGE,
                f"record is {len(raw)} bytes; the limit is {self.fp.max_record_bytes}",
            )
        try:
            rec = fr.parse_record(raw)
            bad = self.sources.check_signature(rec)
        except fr.MalformedRecord as e:
            return Rejection(Reason.MALFORMED, str(e))
        if bad is not None:
            return bad
        if check_freshness:
            stale = freshness(rec.timestamp, now, self.fp)
            if stale is not None:
                return stale
        return rec
