"""Prefetch: the digests hashed by the forked child are the ones the process would compute,
are used only for the DVC record they were made for, and a failing or unneeded child changes
nothing (the error comes from the usual place; the child is reaped).

The pytest process may hold helper threads (tqdm's monitor, servers of other test modules), in
which case prefetching is off by design; tests of the mechanism itself say the process is
single-threaded (``single_thread``), and the end-to-end ones run the real CLI in a fresh
process.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

import pytest

from dvc_hooks import dvcfiles, prefetch, workspace
from tests.dvc_hooks.conftest import BIN, guard, sh

pytestmark = pytest.mark.slow


@pytest.fixture
def single_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat the test process as single-threaded (lingering helper threads hold no lock the
    child needs: it only hashes)."""
    monkeypatch.setattr(threading, "active_count", lambda: 1)


def _cli(root: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    proc = sh([str(BIN / "dvc-guard"), *args, "--json"], root, check=False, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    out: dict[str, object] = json.loads(proc.stdout)
    return out


def _outs(root: Path, dvc_file: str) -> list[dvcfiles.DvcOut]:
    return dvcfiles.parse(dvc_file, (root / dvc_file).read_bytes())


def _no_children() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_child_digests_equal_the_in_process_ones(dvc_repo: Path, single_thread: None) -> None:
    outs = _outs(dvc_repo, "data/images.dvc") + _outs(dvc_repo, "data/train.csv.dvc")
    ahead = prefetch.Prefetch.start(dvc_repo, outs, workers=2)
    assert ahead is not None
    for o in outs:
        got = ahead.take(o)
        assert got is not None
        digests, seconds = got
        assert digests == workspace.digests(dvc_repo, o)
        assert seconds >= 0
    assert ahead.take(outs[0]) is None  # taken once
    ahead.close()
    assert _no_children()


def test_only_the_record_it_was_made_for(dvc_repo: Path, single_thread: None) -> None:
    (out,) = _outs(dvc_repo, "data/images.dvc")
    ahead = prefetch.Prefetch.start(dvc_repo, [out], workers=1)
    assert ahead is not None
    other = dvcfiles.DvcOut(out.dvc_file, out.path, "f" * 32 + ".dir", "md5", None, None)
    assert ahead.take(other) is None  # the DVC file changed since: hash it again
    assert ahead.take(out) is not None
    ahead.close()


def test_failing_child_gives_nothing_and_verify_reports_the_error(
    dvc_repo: Path, monkeypatch: pytest.MonkeyPatch, single_thread: None
) -> None:
    real = os.open

    def deny(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if str(path).endswith("3.bin"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", deny)
    (out,) = _outs(dvc_repo, "data/images.dvc")
    ahead = prefetch.Prefetch.start(dvc_repo, [out])
    assert ahead is not None
    assert ahead.take(out) is None
    ahead.close()
    proc = guard(dvc_repo, "verify", "--no-cache", "data/images.dvc")
    assert proc.returncode == 1
    assert "data/images: cannot read data file: Permission denied" in proc.stderr
    assert _no_children()


def test_unneeded_child_is_stopped_and_reaped(dvc_repo: Path, single_thread: None) -> None:
    (out,) = _outs(dvc_repo, "data/images.dvc")
    ahead = prefetch.Prefetch.start(dvc_repo, [out])
    assert ahead is not None
    ahead.close()
    assert _no_children()


def test_unsigned_file_is_still_refused_first(dvc_repo: Path) -> None:
    """The signature check still comes first (the real CLI, which prefetches)."""
    sig = dvc_repo / "data" / "images.dvc.sig"
    saved = sig.read_bytes()
    sig.unlink()
    try:
        out = _cli(dvc_repo, "verify", "--no-cache", "data/images.dvc")
    finally:
        sig.write_bytes(saved)
    assert out["ok"] is False
    assert out["error"] == "VerificationError"
    assert any("data/images.dvc is not signed" in d for d in out["details"])  # type: ignore[attr-defined]


def test_verify_same_with_and_without_prefetch(dvc_repo: Path) -> None:
    """The real CLI: a cold verify takes every output from the child, and reports the same
    files and bytes as with prefetching turned off."""
    on = _cli(dvc_repo, "verify", "--no-cache")
    env = {**os.environ, prefetch.ENV: "0"}
    env.pop("DVC_GUARD_HASH_CACHE", None)
    off = _cli(dvc_repo, "verify", "--no-cache", env=env)
    assert on["ok"] is True
    assert off["ok"] is True
    assert on["prefetched_outputs"] == 3  # train.csv, images/, features.csv
    assert off["prefetched_outputs"] == 0
    assert (on["files"], on["bytes"], on["verified"]) == (
        off["files"],
        off["bytes"],
        off["verified"],
    )
    cached = _cli(dvc_repo, "verify", "--cache")
    assert cached["ok"] is True
    assert cached["prefetched_outputs"] == 0  # the cache path lists instead


def test_off_when_threads_run_or_turned_off(
    dvc_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outs = _outs(dvc_repo, "data/images.dvc")
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert prefetch.Prefetch.start(dvc_repo, outs) is None
    finally:
        stop.set()
        t.join()
    monkeypatch.setenv(prefetch.ENV, "0")
    assert prefetch.Prefetch.start(dvc_repo, outs) is None
    monkeypatch.delenv(prefetch.ENV)
    assert prefetch.Prefetch.start(dvc_repo, []) is None


def test_interrupted_wait_stops_the_child(
    dvc_repo: Path, monkeypatch: pytest.MonkeyPatch, single_thread: None
) -> None:
    """Ctrl-C while waiting for the child's result kills and reaps it (no waiting for it)."""
    (out,) = _outs(dvc_repo, "data/images.dvc")
    ahead = prefetch.Prefetch.start(dvc_repo, [out])
    assert ahead is not None

    class Interrupted:
        def __init__(self, fd: int) -> None:
            self.fd = fd

        def __enter__(self) -> Interrupted:
            return self

        def __exit__(self, *exc: object) -> None:
            os.close(self.fd)

        def read(self, n: int) -> bytes:
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Interrupted(fd))
    with pytest.raises(KeyboardInterrupt):
        ahead.take(out)
    monkeypatch.undo()
    ahead.close()  # already done: must not wait or kill again
    assert _no_children()


def test_pre_push_prefetches_head_only_when_head_is_pushed(dvc_repo: Path) -> None:
    head = sh(["git", "rev-parse", "HEAD"], dvc_repo).stdout.strip()
    base = sh(["git", "rev-parse", "HEAD~1"], dvc_repo).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "DVC_GUARD_HASH_CACHE"}
    pushed = _cli(
        dvc_repo,
        "verify",
        "--pre-push",
        env={**env, "PRE_COMMIT_FROM_REF": base, "PRE_COMMIT_TO_REF": head},
    )
    assert pushed["ok"] is True
    assert pushed["prefetched_outputs"] == 3
    other = _cli(
        dvc_repo,
        "verify",
        "--pre-push",
        env={**env, "PRE_COMMIT_FROM_REF": base, "PRE_COMMIT_TO_REF": base},
    )
    assert other["ok"] is True
    assert other["prefetched_outputs"] == 0  # HEAD not pushed: signatures only, no hashing
