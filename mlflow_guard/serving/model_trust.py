"""Keep checking that the served model's signing key is trusted (a kill switch for ML10).

``mlflow-guard serve`` verifies the model before loading it; this keeps that decision current:
before every request the policy file and its key files are checked for changes (one ``stat``
each, see :class:`~mlflow_guard.server.policy_watch.PolicyWatch`), and the signer's key is
checked against the (re)loaded trust store — on a change, and at least once a second so that a
``not_after`` passing while serving counts too. When the key is revoked, expired or no longer
trusted for ``model``, or the policy stops loading, every request (``/ping`` and ``/health``
included, so a load balancer takes the replica out) is answered 503 with the reason, until the
policy trusts the key again. Nothing is unloaded or re-verified on disk: the bytes being served
were verified at start-up; what changed is whether their signer may still be believed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mlflow_guard.core.errors import KeyNotTrusted, PolicyError
from mlflow_guard.core.policy import Policy, Purpose
from mlflow_guard.server.policy_watch import PolicyWatch

RECHECK_SECONDS = 1.0


class ModelKeyWatch:
    """Whether the served model's signer is still trusted; ``denial()`` says why not.

    Args:
        policy: the policy the model was verified with.
        policy_path: its file (watched for changes).
        signer_key_id: hex sha256 of the key that signed the served model.
        clock: Unix time (tests); the trust check runs at ``clock()``.
        monotonic: interval clock for the once-a-second re-check (tests).
    """

    def __init__(
        self,
        policy: Policy,
        policy_path: str | Path,
        signer_key_id: str,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._watch = PolicyWatch(policy, policy_path)
        self._key_id = signer_key_id
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._checked: tuple[int, float] | None = None  # (generation, monotonic time)
        self._denial: str | None = None

    def denial(self) -> str | None:
        """``None`` while the model may be served; otherwise the reason it may not."""
        try:
            self._watch.refresh()
        except PolicyError as e:
            return f"{e.summary}. Next step: {e.hint}"
        except Exception as e:  # fail closed: an unexpected error stops serving too
            return f"cannot check the policy: {type(e).__name__}: {e}"
        now = self._monotonic()
        gen = self._watch.generation
        checked = self._checked
        if checked is not None and checked[0] == gen and now - checked[1] < RECHECK_SECONDS:
            return self._denial
        with self._lock:
            at = datetime.fromtimestamp(self._clock(), UTC)
            try:
                self._watch.trust.resolve(self._key_id, Purpose.MODEL, at)
                denial = None
            except KeyNotTrusted as e:
                denial = (
                    f"the served model's signing key {self._key_id[:16]}… is no longer trusted: "
                    f"{e.summary}; the model is not served. Next step: serve a model signed by "
                    "a trusted key, or restore the key in the policy"
                )
            self._denial, self._checked = denial, (gen, now)
            return denial
