"""The served model's signer is re-checked against the policy while serving (kill switch)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlflow_guard.core import keys
from mlflow_guard.core.policy import load_policy
from mlflow_guard.serving.model_trust import RECHECK_SECONDS, ModelKeyWatch

POLICY = """\
version: 1
keys:
  - {{id: ci, public_key: ci.pub, purposes: [{purpose}]{not_after}}}
revoked: [{revoked}]
"""


def _write(path: Path, *, purpose: str = "model", revoked: str = "", not_after: str = "") -> None:
    extra = f", not_after: '{not_after}'" if not_after else ""
    path.write_text(POLICY.format(purpose=purpose, revoked=revoked, not_after=extra))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


class Clock:
    def __init__(self) -> None:
        self.wall = datetime(2026, 11, 28, 12, tzinfo=UTC).timestamp()
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def env(tmp_path: Path) -> tuple[Path, str, Clock]:
    signer = keys.Signer(keys.generate())
    (tmp_path / "ci.pub").write_bytes(keys.public_pem(signer.public_key))
    path = tmp_path / "guard.yaml"
    _write(path)
    return path, signer.key_id, Clock()


def _watch(path: Path, key_id: str, clock: Clock) -> ModelKeyWatch:
    return ModelKeyWatch(
        load_policy(path), path, key_id, clock=lambda: clock.wall, monotonic=lambda: clock.mono
    )


def test_trusted_key_serves(env: tuple[Path, str, Clock]) -> None:
    path, key_id, clock = env
    assert _watch(path, key_id, clock).denial() is None


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        ({"revoked": "ci"}, "revoked"),
        ({"purpose": "dataset"}, "not for 'model'"),
    ],
)
def test_policy_edit_stops_serving_at_the_next_request(
    env: tuple[Path, str, Clock], edit: dict[str, str], needle: str
) -> None:
    path, key_id, clock = env
    watch = _watch(path, key_id, clock)
    assert watch.denial() is None
    _write(path, **edit)
    why = watch.denial()
    assert why is not None
    assert "no longer trusted" in why
    assert needle in why
    _write(path)  # restored: served again
    assert watch.denial() is None


def test_expiry_while_serving_is_noticed_within_a_second(env: tuple[Path, str, Clock]) -> None:
    path, key_id, clock = env
    soon = datetime.fromtimestamp(clock.wall, UTC) + timedelta(seconds=30)
    _write(path, not_after=soon.isoformat())
    watch = _watch(path, key_id, clock)
    assert watch.denial() is None
    clock.advance(31)
    why = watch.denial()
    assert why is not None
    assert "expired" in why
    assert RECHECK_SECONDS <= 1.0


def test_broken_policy_stops_serving(env: tuple[Path, str, Clock]) -> None:
    path, key_id, clock = env
    watch = _watch(path, key_id, clock)
    path.write_text("version: 1\nkeys: [\n")
    why = watch.denial()
    assert why is not None
    assert "no longer loads" in why
