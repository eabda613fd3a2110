"""Write order of ``feedback ingest``: a failed file write leaves no record unknown or lost.

The quarantine file is written before the dataset append, and both before the commit. A write
that fails (a directory where the file should be, a file-size limit hit in the middle of an
append) rolls the replay store back, leaves the dataset byte-identical and the input untouched,
and the same ingest run again once the cause is fixed stores each record exactly once.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlflow_guard.cli import run
from tests.feedback.conftest import Env


def _db_state(env: Env) -> dict[str, list[tuple[object, ...]]]:
    """Every feedback table's rows, sorted (what "the replay store is unchanged" compares)."""
    engine = sa.create_engine(env.db)
    tables = ["guard_feedback_seen", "guard_feedback_batches", "guard_feedback_quarantine"]
    try:
        with engine.connect() as c:
            return {
                t: sorted(tuple(r) for r in c.execute(sa.text(f"SELECT * FROM {t}")))
                for t in tables
            }
    finally:
        engine.dispose()


def _ingest_args(env: Env, path: Path, *extra: str) -> list[str]:
    return ["feedback", "ingest", str(path), "--into", str(env.into),
            "--policy", str(env.policy_path), "--db", env.db, *extra]  # fmt: skip


def _seed(env: Env, capsys: pytest.CaptureFixture[str], now: float) -> bytes:
    """One earlier batch, so that the dataset and the replay store are not empty."""
    first = env.root / "first.jsonl"
    first.write_bytes(env.line(env.checkout, "seed", ts=now) + b"\n")
    assert run(_ingest_args(env, first)) == 0
    capsys.readouterr()
    return env.into.read_bytes()


def _mixed_batch(env: Env, now: float) -> tuple[Path, list[bytes], bytes]:
    """Two good records and a forged one; returns (path, good lines, forged line)."""
    good = [env.line(env.checkout, "ok", ts=now), env.line(env.web, "ok", ts=now)]
    rec = json.loads(env.line(env.mobile, "ok", ts=now))
    rec["payload"]["label"] = "forged"
    forged = json.dumps(rec).encode()
    path = env.root / "in.jsonl"
    path.write_bytes(b"\n".join([good[0], forged, good[1]]) + b"\n")
    return path, good, forged


def test_unwritable_quarantine_leaves_dataset_store_and_input_unchanged(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    dataset_before = _seed(env, capsys, now)
    path, good, forged = _mixed_batch(env, now)
    input_before = path.read_bytes()
    db_before = _db_state(env)
    env.qfile.path.mkdir(parents=True)  # a directory where the quarantine file should be

    rc = run(_ingest_args(env, path, "--quarantine", str(env.qfile.path)))

    assert rc == 2
    err = capsys.readouterr().err
    assert f"cannot write the quarantine {env.qfile.path}" in err
    assert "Is a directory" in err
    assert "nothing was ingested" in err
    assert "run the same ingest again" in err
    assert env.into.read_bytes() == dataset_before
    assert _db_state(env) == db_before
    assert path.read_bytes() == input_before
    assert env.qfile.path.is_dir()
    assert not any(env.qfile.path.iterdir())

    # the cause fixed, the same input is ingested once: good records appended, forged quarantined
    env.qfile.path.rmdir()
    assert run(_ingest_args(env, path, "--quarantine", str(env.qfile.path))) == 1
    assert env.into.read_bytes() == dataset_before + good[0] + b"\n" + good[1] + b"\n"
    assert [(e.reason, e.raw) for e in env.qfile.entries()] == [("bad-signature", forged)]


def test_unwritable_dataset_keeps_rejected_records_and_claims_nothing(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    _seed(env, capsys, now)
    path, good, forged = _mixed_batch(env, now)
    db_before = _db_state(env)
    moved = env.into.with_name("moved.jsonl")
    env.into.rename(moved)
    env.into.mkdir()  # a directory where the dataset file should be

    rc = run(_ingest_args(env, path))

    assert rc == 2
    err = capsys.readouterr().err
    assert f"cannot append to the dataset {env.into}" in err
    assert "no record was accepted" in err
    assert "1 rejected record(s) are in the quarantine" in err
    assert _db_state(env) == db_before  # nothing claimed
    assert [(e.reason, e.raw) for e in env.qfile.entries()] == [("bad-signature", forged)]

    env.into.rmdir()
    moved.rename(env.into)
    assert run(_ingest_args(env, path)) == 1
    assert env.into.read_bytes().splitlines()[-2:] == good
    # the forged record is quarantined a second time (harmless: it can be released only once)
    assert [(e.reason, e.raw) for e in env.qfile.entries()] == [("bad-signature", forged)] * 2


def _limited_ingest(env: Env, path: Path, limit: int) -> subprocess.CompletedProcess[str]:
    """``feedback ingest`` in a process that may not write any file beyond ``limit`` bytes."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "mlflow_guard.cli", *_ingest_args(env, path)],
        preexec_fn=limit_file_size,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )


def test_append_cut_short_by_a_full_disk_is_undone(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    # a dataset larger than every other file the ingest writes (blank lines, adopted by the
    # first ingest: bytes added by hand after a commit would be quarantined as uncommitted)
    env.into.parent.mkdir(parents=True)
    env.into.write_bytes(b" \n" * 1_000_000)
    padded = _seed(env, capsys, now)  # room for 40 more bytes only
    path, good, forged = _mixed_batch(env, now)
    db_before = _db_state(env)

    proc = _limited_ingest(env, path, len(padded) + 40)

    assert proc.returncode == 2, proc.stderr
    assert f"cannot append to the dataset {env.into}" in proc.stderr
    assert "File too large" in proc.stderr
    assert env.into.read_bytes() == padded  # the 40 bytes that went in were truncated away
    assert _db_state(env) == db_before
    assert [(e.reason, e.raw) for e in env.qfile.entries()] == [("bad-signature", forged)]

    # without the limit the same input is accepted once
    assert run(_ingest_args(env, path)) == 1
    assert env.into.read_bytes() == padded + good[0] + b"\n" + good[1] + b"\n"


def test_failed_release_leaves_the_entry_quarantined(
    make_env: Callable[..., Env], capsys: pytest.CaptureFixture[str]
) -> None:
    """A release whose dataset append fails: exit 2, the replay store rolls back and the
    quarantine file's mark is undone, so the same entry can be released once the path is fixed."""
    env = make_env({"quota": {"records": 0}})
    line = env.line(env.web, "ok", ts=time.time())
    path = env.root / "in.jsonl"
    path.write_bytes(line + b"\n")
    assert run(_ingest_args(env, path)) == 1  # over quota: quarantined
    (entry,) = env.qfile.entries()
    assert entry.reason == "quota"
    db_before = _db_state(env)
    blocked = env.root / "blocked.jsonl"
    blocked.mkdir()  # a directory where the dataset file should be
    capsys.readouterr()

    release = ["feedback", "quarantine", "release", entry.qid, "--quarantine",
               str(env.qfile.path), "--policy", str(env.policy_path), "--db", env.db,
               "--as", "root-admin", "--into"]  # fmt: skip
    assert run([*release, str(blocked)]) == 2
    err = capsys.readouterr().err
    assert f"cannot append to the dataset {blocked}" in err
    assert "the record was not released" in err
    assert env.qfile.entries() == [entry]  # still quarantined, unchanged
    assert _db_state(env) == db_before

    assert run([*release, str(env.into)]) == 0
    assert env.into.read_bytes() == line + b"\n"
    assert [e.status for e in env.qfile.entries()] == ["released"]
