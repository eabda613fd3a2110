"""When the server signs the next audit checkpoint: every N entries, and at least every T."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class CheckpointSchedule:
    """Decides, after an append, whether a checkpoint is due.

    Args:
        every: checkpoint when ``seq`` is a multiple of this (0: never by count).
        interval: checkpoint when the last one is older than this (``None``: never by time).
    """

    def __init__(self, every: int, interval: timedelta | None) -> None:
        self.every = max(0, every)
        self.interval = interval
        self._last: datetime | None = None
        self._lock = threading.Lock()

    def written(self, at: datetime) -> None:
        """Record that a checkpoint was written at ``at``."""
        with self._lock:
            self._last = at

    def due(self, seq: int, last_in_db: Callable[[], datetime | None]) -> bool:
        """Whether to checkpoint after entry ``seq``; ``last_in_db`` is read once per process."""
        if self.every and seq % self.every == 0:
            return True
        if self.interval is None:
            return False
        with self._lock:
            now = datetime.now(UTC)
            if self._last is None:
                self._last = last_in_db() or datetime.fromtimestamp(0, UTC)
            if now - self._last < self.interval:
                return False
            self._last = now
            return True
