"""The guard server's current policy, reloaded when the policy file or a key file changes.

Revoking a key (``revoked:``), shortening its ``not_after``, removing a role or tightening a
protected target takes effect at the next request of every worker and replica that reads the
same file: :meth:`PolicyWatch.refresh` runs at the start of each request and compares a cheap
fingerprint (``stat`` of the policy file and every public key file it names). When something
changed, the policy and its trust store are loaded again; if that fails — a YAML typo, a
missing key file — the server **refuses every request** with 503 and the loader's message until
the files load again (fail closed: a half-applied revocation must not leave the old keys
trusted). Nothing is reloaded when nothing changed.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from mlflow_guard.core.errors import GuardError, PolicyError
from mlflow_guard.core.policy import Policy, load_policy
from mlflow_guard.core.trust import TrustStore

_log = logging.getLogger(__name__)
_Stamp = tuple[tuple[str, int, int, int, int] | tuple[str], ...]


def _stamp(files: list[Path]) -> _Stamp:
    out: list[tuple[str, int, int, int, int] | tuple[str]] = []
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            out.append((str(f),))
            continue
        out.append((str(f), st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino))
    return tuple(out)


def _files(path: Path, policy: Policy) -> list[Path]:
    return [path, *(policy.key_path(k) for k in policy.keys)]


@dataclass(frozen=True)
class _State:
    policy: Policy
    trust: TrustStore
    stamp: _Stamp
    error: PolicyError | None = None


class PolicyWatch:
    """Holds the last good policy and reloads it when its files change.

    Args:
        policy: the policy loaded at start-up.
        path: its file; ``None`` pins ``policy`` (nothing is watched, as in embedded tests).
    """

    def __init__(self, policy: Policy, path: str | os.PathLike[str] | None = None) -> None:
        self._path = Path(path) if path is not None else None
        stamp = _stamp(_files(self._path, policy)) if self._path is not None else ()
        self._state = _State(policy, TrustStore.from_policy(policy), stamp)
        self._lock = threading.Lock()
        self.generation = 0

    @property
    def policy(self) -> Policy:
        """The current policy (the last one that loaded)."""
        return self._state.policy

    @property
    def trust(self) -> TrustStore:
        """The current policy's trust store."""
        return self._state.trust

    def trust_for(self, policy: Policy) -> TrustStore:
        """The trust store of ``policy``: the watcher's own when ``policy`` is its current one
        (so the server's components share one store per reload), else built from ``policy``."""
        state = self._state  # one read: policy and trust of the same reload
        return state.trust if state.policy is policy else TrustStore.from_policy(policy)

    def refresh(self) -> Policy:
        """Reload if the files changed; return the current policy.

        Raises:
            PolicyError: the files changed and no longer load; raised until they load again.
        """
        if self._path is None:
            return self._state.policy
        state = self._state
        if _stamp(_files(self._path, state.policy)) != state.stamp or state.error is not None:
            state = self._reload()
        if state.error is not None:
            raise state.error
        return state.policy

    def _reload(self) -> _State:
        assert self._path is not None
        with self._lock:
            old = self._state
            seen = _stamp(_files(self._path, old.policy))
            if seen == old.stamp and old.error is None:
                return old  # another thread reloaded meanwhile
            if old.error is not None and seen == old.stamp:
                return old  # still broken, unchanged since the failed attempt
            try:
                policy = load_policy(self._path)
                trust = TrustStore.from_policy(policy)
            except Exception as e:  # whatever stops the files from loading refuses requests
                summary = e.summary if isinstance(e, GuardError) else str(e)
                err = PolicyError(
                    "the policy changed and no longer loads; every request is refused until it "
                    f"does: {summary}",
                    details=list(e.details) if isinstance(e, GuardError) else [],
                    hint=f"fix {self._path} or the key files it names; the server picks the fix "
                    "up at the next request",
                )
                _log.error("guard: %s", err.diagnostics())
                self._state = _State(old.policy, old.trust, seen, err)
                return self._state
            # The fingerprint taken *before* loading: an edit made while loading is seen next
            # time. (If the new policy names other key files, the next request reloads once more.)
            self._state = _State(policy, trust, seen)
            self.generation += 1
            _log.warning("guard: policy %s reloaded (generation %d)", self._path, self.generation)
            return self._state
