"""Policy section ``feedback``: which sources may feed data back, how fresh, how much, how skewed.

Sources are either policy keys with purpose ``feedback`` (Ed25519 / ECDSA P-256 signatures; listed
under ``sources`` by key id) or HMAC sources (``hmac_sources``) for services that cannot hold a
private key: they share a secret read from an environment variable, never from the policy file.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import Field, field_validator, model_validator

from mlflow_guard.core.policy._types import Duration, StrictModel

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class HmacSource(StrictModel):
    """A feedback source that signs with HMAC-SHA256 (Standard Webhooks: ``id.timestamp.body``).

    Attributes:
        id: the source name records carry in ``source``.
        secret_env: environment variable holding the shared secret (``whsec_<base64>`` or text).
    """

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.@-]+$")
    secret_env: str = Field(min_length=1)

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not _ENV_NAME.match(v):
            raise ValueError(f"expected an environment variable name, got {v!r}")
        return v


class Quota(StrictModel):
    """At most ``records`` accepted records per source within ``per``."""

    records: int = Field(ge=0)
    per: Duration = timedelta(hours=1)


class SkewPolicy(StrictModel):
    """OWASP ML08 skew checks applied to every batch; a violation quarantines the whole batch.

    Attributes:
        label_field: payload field holding the label whose distribution is checked.
        baseline: expected label shares (normalised); without it the accepted history is used.
        max_label_distance: largest Jensen–Shannon distance (base 2, 0..1) batch vs baseline,
            checked for the batch and for each source's part of it.
        max_source_share: largest share of a batch one source may contribute.
        max_volume_ratio: largest ratio of a source's records in this batch to its mean per batch
            over its recent history.
        min_records: batches (or source parts) smaller than this skip the distribution checks.
        min_history: batches of history a source needs before the volume check applies.
        history_batches: how many recent batches form a source's volume history.
    """

    label_field: str = "label"
    baseline: dict[str, float] | None = None
    max_label_distance: float | None = Field(default=None, ge=0, le=1)
    max_source_share: float | None = Field(default=None, gt=0, le=1)
    max_volume_ratio: float | None = Field(default=None, gt=0)
    min_records: int = Field(default=20, ge=1)
    min_history: int = Field(default=3, ge=1)
    history_batches: int = Field(default=20, ge=1)

    @field_validator("baseline")
    @classmethod
    def _shares(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None and (not v or any(s < 0 for s in v.values()) or sum(v.values()) <= 0):
            raise ValueError("baseline needs at least one label with a non-negative share")
        return v


class FeedbackPolicy(StrictModel):
    """Feedback-data authentication settings.

    Attributes:
        sources: policy key ids (purpose ``feedback``) whose signed records are accepted.
        hmac_sources: HMAC-SHA256 sources and the environment variables holding their secrets.
        tolerance: maximum age of a record's timestamp when it arrives.
        clock_skew: how far in the future a timestamp may be (clock differences).
        replay_window: how long record ids are remembered; at least ``tolerance + clock_skew``
            (default), so a record old enough to be forgotten is already stale.
        max_record_bytes: largest accepted record (one JSONL line).
        max_batch_records: largest batch, in records.
        max_batch_bytes: largest batch, in bytes.
        quota: default per-source quota; ``quotas`` overrides it per source.
        skew: skew checks (ML08).
        datasets: feedback dataset files (DVC outputs) the ``dvc-guard feedback-check`` hook
            verifies.
    """

    sources: list[str] = Field(default_factory=list)
    hmac_sources: list[HmacSource] = Field(default_factory=list)
    tolerance: Duration = timedelta(seconds=300)
    clock_skew: Duration = timedelta(seconds=30)
    replay_window: Duration | None = None
    max_record_bytes: int = Field(default=64 * 1024, ge=64)
    max_batch_records: int = Field(default=10_000, ge=1)
    max_batch_bytes: int = Field(default=16 * 1024 * 1024, ge=64)
    quota: Quota | None = None
    quotas: dict[str, Quota] = Field(default_factory=dict)
    skew: SkewPolicy = Field(default_factory=SkewPolicy)
    datasets: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> FeedbackPolicy:
        names = list(self.sources) + [h.id for h in self.hmac_sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feedback source names must be unique; repeated: {dupes}")
        unknown = sorted(set(self.quotas) - set(names))
        if unknown:
            raise ValueError(f"feedback.quotas names unknown sources: {unknown}")
        if self.replay_window is not None and self.replay_window < self.minimum_replay_window:
            raise ValueError(
                "feedback.replay_window must be at least tolerance + clock_skew "
                f"({int(self.minimum_replay_window.total_seconds())}s), or a replayed record "
                "could be accepted again while still fresh"
            )
        return self

    @property
    def minimum_replay_window(self) -> timedelta:
        """The shortest safe replay window: ``tolerance + clock_skew``."""
        return self.tolerance + self.clock_skew

    @property
    def effective_replay_window(self) -> timedelta:
        """How long record ids are kept in the replay store."""
        return self.replay_window or self.minimum_replay_window

    def quota_for(self, source: str) -> Quota | None:
        """The quota that applies to ``source`` (override, else default, else none)."""
        return self.quotas.get(source, self.quota)

    def hmac_source(self, source: str) -> HmacSource | None:
        """The HMAC source entry named ``source``, if any."""
        return next((h for h in self.hmac_sources if h.id == source), None)
