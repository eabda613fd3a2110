"""Records appended by a batch whose commit failed are moved out of the dataset (reason
``uncommitted``) by the next ingest or release; a dataset edited or replaced is refused.

How the commit is made to fail, for real:

- **a crash** between the fsync of the append and the commit: ``feedback ingest`` runs in a
  subprocess whose ``os.fsync`` (stdlib, not our code) SIGKILLs the process right after the
  dataset's bytes are on disk. Nothing in mlflow-guard knows about the test; the kernel drops
  the ``flock`` and the database discards the open transaction, exactly as after a power cut or
  an OOM kill. Run on SQLite and PostgreSQL.
- **the database refusing the commit**: on PostgreSQL a ``DEFERRABLE INITIALLY DEFERRED``
  constraint trigger on ``guard_feedback_seen`` raises at ``COMMIT`` for ids starting with
  ``doomed``, so every statement succeeds and only the commit fails, in process, through the
  real CLI (no patch of our store either). SQLite has no deferred trigger.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlflow_guard.cli import run
from mlflow_guard.feedback.repair import TAIL_WINDOW, dataset_name
from tests._pg import admin_connection
from tests.feedback.conftest import Env

PG_TEST = "postgresql://postgres@127.0.0.1:5432/test"

KILL_AFTER_APPEND = """
import os, signal, sys
target = os.path.realpath(os.environ["GUARD_TEST_KILL_DATASET"])
start = os.path.getsize(target) if os.path.exists(target) else 0
real_fsync = os.fsync

def fsync(fd):
    real_fsync(fd)
    try:
        name = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return
    if name == target and os.fstat(fd).st_size > start:
        os.kill(os.getpid(), signal.SIGKILL)  # appended and fsynced; the commit never runs

os.fsync = fsync
from mlflow_guard.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """``(uri, schema)`` of a fresh PostgreSQL schema in ``test``, dropped afterwards."""
    admin = admin_connection(PG_TEST)
    schema = f"guard_uncommitted_{os.urandom(5).hex()}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_TEST}?options=-csearch_path%3D{schema}", schema
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_env(request: pytest.FixtureRequest, make_env: Callable[..., Env]) -> Env:
    if request.param == "sqlite":
        return make_env()
    uri, _ = request.getfixturevalue("pg_schema")
    return make_env(db=uri)


def _args(env: Env, path: Path, *extra: str) -> list[str]:
    return ["feedback", "ingest", str(path), "--into", str(env.into),
            "--policy", str(env.policy_path), "--db", env.db, *extra]  # fmt: skip


def _release_args(env: Env, qid: str) -> list[str]:
    return ["feedback", "quarantine", "release", qid, "--into", str(env.into),
            "--policy", str(env.policy_path), "--db", env.db, "--as", "root-admin"]  # fmt: skip


def _batch(env: Env, name: str, lines: list[bytes]) -> Path:
    path = env.root / name
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def _db_state(env: Env) -> dict[str, list[tuple[object, ...]]]:
    """Every feedback table's rows, sorted."""
    tables = ["guard_feedback_seen", "guard_feedback_batches", "guard_feedback_quarantine",
              "guard_feedback_files"]  # fmt: skip
    store = env.store()
    try:
        with store.engine.connect() as c:
            return {
                t: sorted(tuple(r) for r in c.execute(sa.text(f"SELECT * FROM {t}")))
                for t in tables
            }
    finally:
        store.dispose()


def _seen_ids(env: Env) -> set[str]:
    return {str(r[1]) for r in _db_state(env)["guard_feedback_seen"]}


def _file_row(env: Env) -> tuple[int, int]:
    """``(size, tail_len)`` recorded for the dataset."""
    ((row),) = [r for r in _db_state(env)["guard_feedback_files"]]
    assert row[1] == dataset_name(env.into)
    return int(row[2]), int(row[3])


def _killed_ingest(env: Env, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", KILL_AFTER_APPEND, *_args(env, path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GUARD_TEST_KILL_DATASET": str(env.into)},
    )


def _rid(line: bytes) -> str:
    return str(json.loads(line)["id"])


def test_crash_between_append_and_commit_is_repaired_by_the_next_ingest(
    any_env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env = any_env
    now = time.time()
    seed = env.line(env.checkout, "seed", ts=now)
    assert run(_args(env, _batch(env, "seed.jsonl", [seed]))) == 0
    committed = env.into.read_bytes()
    assert _file_row(env)[0] == len(committed)

    lost = [env.line(env.checkout, "a", ts=now), env.line(env.web, "b", ts=now)]
    forged = env.line(env.mobile, "ok", ts=now).replace(b'"ok"', b'"no"')
    proc = _killed_ingest(env, _batch(env, "lost.jsonl", [lost[0], forged, lost[1]]))

    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert env.into.read_bytes() == committed + lost[0] + b"\n" + lost[1] + b"\n"  # appended
    assert _seen_ids(env) == {_rid(seed)}  # ... but never committed
    assert _file_row(env)[0] == len(committed)
    assert [(e.reason, e.raw) for e in env.qfile.entries()] == [("bad-signature", forged)]
    capsys.readouterr()

    fresh = env.line(env.mobile, "c", ts=now)
    assert run(_args(env, _batch(env, "next.jsonl", [fresh]), "--json")) == 1  # to review
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False

    # the uncommitted lines, byte-for-byte, went to quarantine before this batch was appended
    moved = [e for e in env.qfile.entries() if e.reason == "uncommitted"]
    assert [e.raw for e in moved] == lost
    assert [e.detail["offset"] for e in moved] == [
        len(committed),
        len(committed) + len(lost[0]) + 1,
    ]
    assert {e.detail["committed_size"] for e in moved} == {len(committed)}
    assert [u["qid"] for u in out["uncommitted"]] == [e.qid for e in moved]
    assert out["accepted"] == 1
    assert out["rejections"] == []
    assert env.into.read_bytes() == committed + fresh + b"\n"
    assert _seen_ids(env) == {_rid(seed), _rid(fresh)}
    assert _file_row(env)[0] == len(committed + fresh + b"\n")

    # a replay of an uncommitted record is accepted once, then refused as a replay
    replay = _batch(env, "replay.jsonl", [lost[0]])
    assert run(_args(env, replay)) == 0
    after = env.into.read_bytes()
    assert after == committed + fresh + b"\n" + lost[0] + b"\n"
    assert run(_args(env, replay)) == 1
    assert env.into.read_bytes() == after
    assert env.qfile.entries()[-1].reason == "replay"
    assert env.qfile.entries()[-1].raw == lost[0]


def test_crash_in_the_first_batch_into_a_new_file_is_repaired(
    env: Env, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file's size (0) is adopted in its own transaction before the first append."""
    now = time.time()
    lost = [env.line(env.checkout, "a", ts=now)]
    proc = _killed_ingest(env, _batch(env, "lost.jsonl", lost))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert env.into.read_bytes() == lost[0] + b"\n"
    assert _file_row(env) == (0, 0)

    fresh = env.line(env.checkout, "b", ts=now)
    assert run(_args(env, _batch(env, "next.jsonl", [fresh]))) == 1  # the repair is to review
    text = capsys.readouterr().out
    assert "1 accepted" in text
    assert "1 line(s) an earlier batch appended without committing were moved" in text
    assert "Next step: review with `mlflow-guard feedback quarantine list" in text
    assert [(e.reason, e.raw) for e in env.qfile.entries()] == [("uncommitted", lost[0])]
    assert env.into.read_bytes() == fresh + b"\n"
    assert "moved 1 uncommitted line(s)" in caplog.text


@pytest.mark.postgres
def test_commit_refused_by_postgresql_then_release_repairs_first(
    make_env: Callable[..., Env],
    pg_schema: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri, schema = pg_schema
    env = make_env({"quotas": {"web": {"records": 0}}}, db=uri)
    env.store().dispose()  # migrated: the trigger needs the table
    admin = admin_connection(PG_TEST)
    with admin.cursor() as cur:
        cur.execute(f"""
            CREATE FUNCTION {schema}.refuse_commit() RETURNS trigger LANGUAGE plpgsql AS
              $$ BEGIN RAISE EXCEPTION 'commit refused for %', NEW.record_id; END $$;
            CREATE CONSTRAINT TRIGGER refuse_doomed AFTER INSERT ON {schema}.guard_feedback_seen
              DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
              WHEN (NEW.record_id LIKE 'doomed%') EXECUTE FUNCTION {schema}.refuse_commit();
        """)
    now = time.time()
    seed = env.line(env.checkout, "seed", ts=now)
    assert run(_args(env, _batch(env, "seed.jsonl", [seed]))) == 0
    committed = env.into.read_bytes()
    capsys.readouterr()

    doomed = env.line(env.checkout, "a", ts=now, record_id="doomed-1")
    over_quota = env.line(env.web, "b", ts=now)
    assert run(_args(env, _batch(env, "b.jsonl", [doomed, over_quota]))) == 3
    err = capsys.readouterr().err
    assert "did not commit after 1 record(s) were appended to" in err
    assert "commit refused for doomed-1" in err
    assert "reason 'uncommitted'" in err
    assert env.into.read_bytes() == committed + doomed + b"\n"
    assert _seen_ids(env) == {_rid(seed)}
    (quota_entry,) = env.qfile.entries()
    assert quota_entry.reason == "quota"

    # release is the next writer: it moves the uncommitted line out before releasing
    assert run(_release_args(env, quota_entry.qid)) == 0
    assert env.into.read_bytes() == committed + over_quota + b"\n"
    entries = env.qfile.entries()
    assert [(e.reason, e.status, e.raw) for e in entries] == [
        ("quota", "released", over_quota),
        ("uncommitted", "quarantined", doomed),
    ]
    assert _file_row(env)[0] == len(committed + over_quota + b"\n")

    # the database fixed, the uncommitted record is released once; a replay of it is refused
    with admin.cursor() as cur:
        cur.execute(f"DROP TRIGGER refuse_doomed ON {schema}.guard_feedback_seen")
    admin.close()
    assert run(_release_args(env, entries[1].qid)) == 0
    assert env.into.read_bytes() == committed + over_quota + b"\n" + doomed + b"\n"
    assert run(_args(env, _batch(env, "again.jsonl", [doomed]))) == 1
    assert env.qfile.entries()[-1].reason == "replay"
    assert env.into.read_bytes() == committed + over_quota + b"\n" + doomed + b"\n"


def _edit_last_record(data: bytes) -> bytes:
    """The last record's label flipped, same length."""
    assert data.count(b'"seed-2"') == 1
    return data.replace(b'"seed-2"', b'"seed-X"')


EDITS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "last record edited, same length": lambda d, _: _edit_last_record(d),
    "truncated by one record": lambda d, first: d[len(first) + 1 :],
    "record inserted at the start": lambda d, first: first + b"\n" + d,
    "record removed and another appended": lambda d, first: d[len(first) + 1 :] + first + b"\n",
    "replaced by a longer file": lambda d, first: (first + b"\n") * 3,
    "deleted": lambda d, first: b"",
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_or_replaced_dataset_is_refused_and_nothing_changes(
    any_env: Env, edit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = any_env
    now = time.time()
    first = env.line(env.checkout, "seed-1", ts=now)
    second = env.line(env.checkout, "seed-2", ts=now)
    assert run(_args(env, _batch(env, "seed.jsonl", [first, second]))) == 0
    edited = EDITS[edit](env.into.read_bytes(), first)
    if edit == "deleted":
        env.into.unlink()
    else:
        env.into.write_bytes(edited)
    db_before = _db_state(env)
    q_before = env.qfile.path.read_bytes() if env.qfile.path.exists() else None
    batch = _batch(env, "next.jsonl", [env.line(env.checkout, "new", ts=now)])
    capsys.readouterr()

    assert run(_args(env, batch)) == 2
    err = capsys.readouterr().err
    assert f"the dataset {env.into} is not the file the guard database last committed" in err
    assert "nothing was ingested" in err
    if edit in ("truncated by one record", "deleted"):
        assert "shorter than the" in err
    else:
        assert "differ from those last committed" in err
    assert "restore the dataset as last ingested" in err
    if edit == "deleted":
        assert not env.into.exists()  # not even an empty file was created
    else:
        assert env.into.read_bytes() == edited
    assert _db_state(env) == db_before
    assert (env.qfile.path.read_bytes() if env.qfile.path.exists() else None) == q_before


def test_release_into_an_edited_dataset_is_refused(
    make_env: Callable[..., Env], capsys: pytest.CaptureFixture[str]
) -> None:
    env = make_env({"quotas": {"web": {"records": 0}}})
    now = time.time()
    seed = env.line(env.checkout, "seed", ts=now)
    assert run(_args(env, _batch(env, "b.jsonl", [seed, env.line(env.web, "w", ts=now)]))) == 1
    (entry,) = env.qfile.entries()
    env.into.write_bytes(env.into.read_bytes().replace(b'"seed"', b'"SEED"'))
    edited, db_before = env.into.read_bytes(), _db_state(env)
    capsys.readouterr()

    assert run(_release_args(env, entry.qid)) == 2
    assert "is not the file the guard database last committed" in capsys.readouterr().err
    assert env.into.read_bytes() == edited
    assert _db_state(env) == db_before
    assert env.qfile.entries() == [entry]  # still quarantined


def test_first_ingest_adopts_an_existing_file(env: Env) -> None:
    """A dataset made before this table existed: its bytes are adopted as committed, untouched
    (a first line without a final newline gets one before the appended record)."""
    now = time.time()
    old = env.line(env.checkout, "old", ts=now - 86400)  # stale: could never be ingested now
    env.into.parent.mkdir(parents=True)
    env.into.write_bytes(old)
    fresh = env.line(env.checkout, "new", ts=now)
    assert run(_args(env, _batch(env, "b.jsonl", [fresh]))) == 0
    assert env.into.read_bytes() == old + b"\n" + fresh + b"\n"
    assert env.qfile.entries() == []
    assert _file_row(env) == (len(old) + 1 + len(fresh) + 1, len(old) + 1 + len(fresh) + 1)


def test_the_window_covers_the_last_64_kib_of_a_large_dataset(env: Env) -> None:
    """Past TAIL_WINDOW bytes the window slides: an edit inside it is refused, the record's
    replay after a hand append is quarantined, and the row keeps exactly the window."""
    now = time.time()
    env.into.parent.mkdir(parents=True)
    filler = b" " * 100 + b"\n"  # blank lines: skipped by every reader
    env.into.write_bytes(filler * (2 * TAIL_WINDOW // len(filler)))
    line = env.line(env.checkout, "a", ts=now)
    assert run(_args(env, _batch(env, "a.jsonl", [line]))) == 0
    size = env.into.stat().st_size
    assert _file_row(env) == (size, TAIL_WINDOW)

    env.into.write_bytes(env.into.read_bytes() + line + b"\n")  # a hand append of a replay
    assert run(_args(env, _batch(env, "b.jsonl", [env.line(env.web, "b", ts=now)]))) == 1
    assert [(e.reason, e.raw) for e in env.qfile.entries()] == [("uncommitted", line)]
    assert env.into.read_bytes().count(line) == 1


@pytest.mark.postgres
def test_the_dataset_stays_locked_until_the_commit_has_ended(
    make_env: Callable[..., Env], pg_schema: tuple[str, str]
) -> None:
    """A commit made slow by the database (a deferred trigger sleeping 2 s): while it runs, the
    appended dataset cannot be locked by another writer; once it has ended, it can."""
    uri, schema = pg_schema
    env = make_env(db=uri)
    env.store().dispose()
    admin = admin_connection(PG_TEST)
    with admin.cursor() as cur:
        cur.execute(f"""
            CREATE FUNCTION {schema}.slow_commit() RETURNS trigger LANGUAGE plpgsql AS
              $$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$;
            CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON {schema}.guard_feedback_seen
              DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
              WHEN (NEW.record_id LIKE 'slow%') EXECUTE FUNCTION {schema}.slow_commit();
        """)
    admin.close()
    line = env.line(env.checkout, "a", record_id="slow-1")
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(env.ingestor().ingest, line + b"\n")
        deadline = time.monotonic() + 30
        while not (env.into.exists() and env.into.stat().st_size > 0):
            assert time.monotonic() < deadline
            assert not job.done()
            time.sleep(0.01)
        fd = os.open(env.into, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # appended, commit still running: locked
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert not job.done()
            assert len(job.result(timeout=60).accepted) == 1
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # committed: free
        finally:
            os.close(fd)
    assert _seen_ids(env) == {"slow-1"}


def test_dataset_name_is_relative_to_the_git_root_else_absolute(tmp_path: Path) -> None:
    """Clones of one repository name a dataset alike (they may share a PostgreSQL database)."""
    for clone in ("a", "b"):
        repo = tmp_path / clone / "repo"
        (repo / "data").mkdir(parents=True)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        assert dataset_name(repo / "data" / "feedback.jsonl") == "data/feedback.jsonl"
    outside = tmp_path / "plain" / "feedback.jsonl"
    outside.parent.mkdir()
    assert dataset_name(outside) == str(outside.resolve())
    link = tmp_path / "a" / "repo" / "link.jsonl"
    link.symlink_to(outside)
    assert dataset_name(link) == str(outside.resolve())  # the file written is the one named
