"""Prefetch: the digests hashed by the forked child are the ones the process would compute,
are used only for the DVC record they were made for, and a failing or unneeded child changes
nothing (the error comes from the usual place; the child is reaped)."""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

import pytest

from dvc_hooks import dvcfiles, prefetch, workspace
from tests.dvc_hooks.conftest import guard

pytestmark = pytest.mark.slow


def _outs(root: Path, dvc_file: str) -> list[dvcfiles.DvcOut]:
    return dvcfiles.parse(dvc_file, (root / dvc_file).read_bytes())


def _no_children() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_child_digests_equal_the_in_process_ones(dvc_repo: Path) -> None:
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


def test_only_the_record_it_was_made_for(dvc_repo: Path) -> None:
    (out,) = _outs(dvc_repo, "data/images.dvc")
    ahead = prefetch.Prefetch.start(dvc_repo, [out], workers=1)
    assert ahead is not None
    other = dvcfiles.DvcOut(out.dvc_file, out.path, "f" * 32 + ".dir", "md5", None, None)
    assert ahead.take(other) is None  # the DVC file changed since: hash it again
    assert ahead.take(out) is not None
    ahead.close()


def test_failing_child_gives_nothing_and_verify_reports_the_error(
    dvc_repo: Path, monkeypatch: pytest.MonkeyPatch
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


def test_unneeded_child_is_stopped_and_reaped(dvc_repo: Path) -> None:
    (out,) = _outs(dvc_repo, "data/images.dvc")
    ahead = prefetch.Prefetch.start(dvc_repo, [out])
    assert ahead is not None
    ahead.close()
    assert _no_children()


def test_unsigned_file_is_still_refused_first(dvc_repo: Path) -> None:
    """The signature check still comes first; the child hashing meanwhile is reaped."""
    sig = dvc_repo / "data" / "images.dvc.sig"
    saved = sig.read_bytes()
    sig.unlink()
    try:
        proc = guard(dvc_repo, "verify", "--no-cache", "data/images.dvc")
    finally:
        sig.write_bytes(saved)
    assert proc.returncode == 1
    assert "data/images.dvc is not signed" in proc.stderr
    assert _no_children()


def test_verify_same_with_and_without_prefetch(
    dvc_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[bool] = []
    real = prefetch.Prefetch.start

    def spy(*a: object, **k: object) -> prefetch.Prefetch | None:
        got = real(*a, **k)  # type: ignore[arg-type]
        started.append(got is not None)
        return got

    monkeypatch.setattr(prefetch.Prefetch, "start", spy)
    on = guard(dvc_repo, "verify", "--no-cache", "--json")
    assert on.returncode == 0, on.stderr
    assert started == [True]
    monkeypatch.setenv(prefetch.ENV, "0")
    off = guard(dvc_repo, "verify", "--no-cache", "--json")
    assert off.returncode == 0, off.stderr
    assert started == [True]  # not even tried
    a, b = json.loads(on.stdout), json.loads(off.stdout)
    assert (a["files"], a["bytes"], a["verified"]) == (b["files"], b["bytes"], b["verified"])
    assert _no_children()


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
