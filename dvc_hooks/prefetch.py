"""Hash workspace data in a forked child while this process checks the signatures.

A cold ``dvc-guard verify`` spends its first part on one CPU: importing pydantic and
cryptography, loading the policy, parsing and verifying the DSSE sidecar. Hashing threads in
the same process would stall behind that work (it holds the GIL), so the hashing starts in a
child process forked *before* those imports, and this process takes its digests when it gets to
the data check. Nothing about the check changes: the same :func:`workspace.digests` runs (with
its refusals and change checks), only earlier; it is matched to an output by DVC's record
(path, md5), so a DVC file edited in between is simply hashed again here.

The child only ever sends back a result. Any failure in it (an unreadable file, a symlink, a
crash) sends nothing, and the output is hashed again in this process, which raises the error
in its usual place: after the signature checks, as without prefetching.

Used only when it can help and cannot hurt: POSIX ``fork``, this process has a single thread,
no digest cache, data checked, and ``DVC_GUARD_PREFETCH`` is not ``0``. A child whose result
was not taken (a signature failed first) is killed and reaped by :meth:`Prefetch.close`.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from dvc_hooks import dvcfiles, workspace

ENV = "DVC_GUARD_PREFETCH"

_Key = tuple[str, str]  # (output path, DVC md5)
_Result = dict[_Key, dict[str, tuple[str, int]]]


def _key(out: dvcfiles.DvcOut) -> _Key:
    return out.path, out.md5


def enabled() -> bool:
    """Whether prefetching is possible here and not turned off (``DVC_GUARD_PREFETCH=0``)."""
    return (
        hasattr(os, "fork")
        and os.environ.get(ENV, "1") != "0"
        and threading.active_count() == 1  # forking a threaded process can deadlock the child
    )


class Prefetch:
    """Workspace digests of some DVC outputs, hashed by a forked child."""

    def __init__(self, pid: int, fd: int, keys: set[_Key]) -> None:
        self._pid = pid
        self._fd = fd
        self._keys = keys
        self._result: _Result | None = None
        self._seconds = 0.0
        self._done = False

    @classmethod
    def start(
        cls, root: Path, outs: Iterable[dvcfiles.DvcOut], *, workers: int | None = None
    ) -> Prefetch | None:
        """Fork a child hashing ``outs``; ``None`` when prefetching is off or impossible."""
        todo = {_key(o): o for o in outs}
        if not todo or not enabled():
            return None
        try:
            r, w = os.pipe()
        except OSError:  # out of descriptors: hash in this process
            return None
        try:
            pid = os.fork()
        except OSError:  # out of processes or memory: hash in this process
            os.close(r)
            os.close(w)
            return None
        if pid == 0:  # pragma: no cover - the child (its result is what the tests check)
            code = 1
            try:
                os.close(r)
                t0 = time.perf_counter()
                res = {k: workspace.digests(root, o, workers=workers) for k, o in todo.items()}
                data = pickle.dumps((res, time.perf_counter() - t0), pickle.HIGHEST_PROTOCOL)
                with os.fdopen(w, "wb") as f:
                    f.write(data)
                code = 0
            except BaseException:  # noqa: S110 - the parent hashes again and reports it
                pass
            finally:
                os._exit(code)
        os.close(w)
        return cls(pid, r, set(todo))

    def _collect(self) -> None:
        if self._done:
            return
        self._done = True
        chunks = []
        try:
            with os.fdopen(self._fd, "rb") as f:
                while chunk := f.read(1 << 20):
                    chunks.append(chunk)
        except BaseException:  # interrupted while waiting: do not wait for the child's hashing
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            raise
        _, status = os.waitpid(self._pid, 0)
        if os.waitstatus_to_exitcode(status) == 0 and chunks:
            self._result, self._seconds = pickle.loads(b"".join(chunks))  # noqa: S301 - our child

    def take(self, out: dvcfiles.DvcOut) -> tuple[dict[str, tuple[str, int]], float] | None:
        """The digests of ``out`` and the child's hashing time, or ``None``: hash it here.

        Waits for the child the first time. ``None`` when ``out`` was not prefetched (or its
        DVC record changed since) or the child failed.
        """
        if _key(out) not in self._keys:
            return None
        self._collect()
        if self._result is None:
            return None
        digests = self._result.pop(_key(out), None)
        if digests is None:
            return None
        seconds, self._seconds = self._seconds, 0.0  # counted once, with the first output
        return digests, seconds

    def close(self) -> None:
        """Stop the child if its result was never taken, and reap it."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.kill(self._pid, signal.SIGKILL)
        os.waitpid(self._pid, 0)
        os.close(self._fd)
