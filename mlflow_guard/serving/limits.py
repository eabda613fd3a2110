"""Per-client rate limits and query budgets (ML05 model stealing): decide 429 and Retry-After.

- **Rate** (``--rate 10/s``): a token bucket per client over *requests*; the bucket holds at
  most one second's worth of requests (at least one), so bursts stay short.
- **Budget** (``--budget N``, ``--budget-window 1d``): at most N *predictions* (input rows) per
  client per fixed window — counting rows, not requests, so a 10,000-row request spends 10,000.
  An extraction attack needs many labelled points; the budget caps how many one token gets.

State is in this process's memory: one ``mlflow-guard serve`` process is one limit domain.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mlflow_guard.core.errors import UsageError

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d*)\s*(s|sec|m|min|h|hour)\s*$")
_UNIT = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}


def parse_rate(text: str) -> float:
    """``"10/s"``, ``"600/m"``, ``"5/10s"`` → requests per second.

    Raises:
        UsageError: unparsable or not positive.
    """
    m = _RATE.match(text)
    if not m:
        raise UsageError(
            f"--rate {text!r} is not a rate", hint="write COUNT/UNIT, e.g. 10/s, 600/m or 5/10s"
        )
    count, mult, unit = float(m.group(1)), float(m.group(2) or 1), _UNIT[m.group(3)]
    if count <= 0 or mult <= 0:
        raise UsageError(f"--rate {text!r} must be positive", hint="e.g. 10/s")
    return count / (mult * unit)


@dataclass(frozen=True)
class Denial:
    """Why a client is refused now and when to come back."""

    reason: str
    retry_after: int


class RateLimiter:
    """Token bucket per client (thread-safe).

    Args:
        per_second: sustained requests per second.
        clock: monotonic time source (tests).
    """

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_second
        self.burst = max(1.0, per_second)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> Denial | None:
        """Spend one request of ``client``; a :class:`Denial` when none is left."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate)
                return Denial(f"rate limit of {self.rate:g} requests/s exceeded", max(1, wait))
            self._buckets[client] = (tokens - 1.0, now)
            return None


class QueryBudget:
    """At most ``limit`` predictions per client per fixed window (thread-safe).

    Args:
        limit: predictions allowed per window.
        window: window length in seconds.
        clock: wall-clock time source (tests).
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.time) -> None:
        if limit < 1 or window <= 0:
            raise UsageError("--budget must be at least 1 and --budget-window positive")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._used: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def _state(self, client: str, now: float) -> tuple[int, int]:
        idx = int(now // self.window)
        used_idx, used = self._used.get(client, (idx, 0))
        return idx, used if used_idx == idx else 0

    def _retry(self, idx: int, now: float) -> int:
        return max(1, math.ceil((idx + 1) * self.window - now))

    def check(self, client: str) -> Denial | None:
        """A :class:`Denial` when ``client`` has nothing left in this window (spends nothing)."""
        now = self._clock()
        with self._lock:
            idx, used = self._state(client, now)
            if used >= self.limit:
                return Denial(self._message(used), self._retry(idx, now))
            return None

    def charge(self, client: str, n: int) -> Denial | None:
        """Spend ``n`` predictions; refuse (spending nothing) when fewer than ``n`` are left."""
        now = self._clock()
        with self._lock:
            idx, used = self._state(client, now)
            if used + n > self.limit:
                return Denial(
                    f"{self._message(used)}; this request asks for {n}", self._retry(idx, now)
                )
            self._used[client] = (idx, used + n)
            return None

    def remaining(self, client: str) -> int:
        """Predictions ``client`` may still make in this window."""
        with self._lock:
            return self.limit - self._state(client, self._clock())[1]

    def _message(self, used: int) -> str:
        return (
            f"query budget exhausted: {used} of {self.limit} predictions used in this "
            f"{self.window:g}s window"
        )
