"""Group commit: concurrent appends in one process share one database transaction.

Every append must hold the chain-head lock until its commit is durable, so appends are
serialized by the database's flush time. Callers that arrive while a transaction is in flight
queue up; the next leader writes all of them (up to ``max_batch``) in one transaction and wakes
each caller with its own result or the batch's error. A single caller pays no extra wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

_I = TypeVar("_I")
_O = TypeVar("_O")


@dataclass(eq=False)
class _Slot(Generic[_I, _O]):
    item: _I
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    out: _O | None = None
    err: BaseException | None = None


class GroupCommit(Generic[_I, _O]):
    """Leader/follower batching around ``write(items) -> outputs`` (same length and order).

    ``write`` may raise: every caller of that batch then gets the exception.
    """

    def __init__(self, write: Callable[[list[_I]], list[_O]], max_batch: int = 64) -> None:
        self._write = write
        self._max = max(1, max_batch)
        self._lock = threading.Lock()
        self._queue: list[_Slot[_I, _O]] = []
        self._busy = False

    def submit(self, item: _I) -> _O:
        """Write ``item`` (possibly with others) and return its output, or raise its error."""
        slot: _Slot[_I, _O] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            if not self._busy:
                self._busy = slot.lead = True
        while not slot.lead:
            slot.wake.wait()
            slot.wake.clear()
            if slot.done:
                break
        if not slot.done:
            self._lead()
        if slot.err is not None:
            raise slot.err
        return slot.out  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self._max], self._queue[self._max :]
        try:
            outs = self._write([s.item for s in batch])
            if len(outs) != len(batch):
                raise RuntimeError("group commit: write returned a wrong number of results")
            for s, o in zip(batch, outs, strict=True):
                s.out = o
        except BaseException as e:  # every caller of the batch must learn of the failure
            for s in batch:
                s.err = e
        with self._lock:
            for s in batch:
                s.done = True
                s.wake.set()
            if self._queue:
                nxt = self._queue[0]
                nxt.lead = True
                nxt.wake.set()
            else:
                self._busy = False
