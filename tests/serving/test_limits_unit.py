"""Rate limiter, query budget and rate parsing (offline, fake clocks)."""

from __future__ import annotations

import pytest

from mlflow_guard.core.errors import UsageError
from mlflow_guard.serving.limits import QueryBudget, RateLimiter, parse_rate


class Clock:
    """A settable clock."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("10/s", 10.0), ("600/m", 10.0), ("5/10s", 0.5), ("3600/h", 1.0), ("2.5/sec", 2.5)],
)
def test_parse_rate(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["", "10", "ten/s", "0/s", "10/d", "-1/s", "10/0s"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--rate"):
        parse_rate(text)


def test_rate_limiter_burst_then_refill_per_client() -> None:
    clock = Clock()
    rl = RateLimiter(2.0, clock)
    assert rl.take("alice") is None
    assert rl.take("alice") is None
    denial = rl.take("alice")
    assert denial is not None
    assert denial.retry_after == 1
    assert "2 requests/s" in denial.reason
    assert rl.take("bob") is None  # per client
    clock.t += 0.5  # one token back
    assert rl.take("alice") is None
    assert rl.take("alice") is not None


def test_slow_rate_retry_after_counts_seconds() -> None:
    clock = Clock()
    rl = RateLimiter(0.1, clock)  # 1 request per 10 s
    assert rl.take("a") is None
    denial = rl.take("a")
    assert denial is not None
    assert denial.retry_after == 10


def test_budget_counts_rows_and_resets_per_window() -> None:
    clock = Clock(100.0)
    b = QueryBudget(10, 60.0, clock)
    assert b.charge("alice", 7) is None
    assert b.remaining("alice") == 3
    over = b.charge("alice", 4)
    assert over is not None
    assert "asks for 4" in over.reason
    assert over.retry_after == 20  # window [60, 120) ends at 120
    assert b.remaining("alice") == 3  # a refused request spends nothing
    assert b.charge("alice", 3) is None
    assert b.check("alice") is not None
    assert b.check("bob") is None
    clock.t = 120.0
    assert b.check("alice") is None
    assert b.remaining("alice") == 10


def test_budget_rejects_nonsense() -> None:
    with pytest.raises(UsageError):
        QueryBudget(0, 60.0)
    with pytest.raises(UsageError):
        QueryBudget(5, 0.0)
