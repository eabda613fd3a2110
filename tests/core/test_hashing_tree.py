"""``hash_tree``, the one-pass cold path: the same files, names, sizes and digests as
``list_files`` + ``hash_entries``, and the same refusals (symlinks, special files, swaps,
rewrites, unreadable files), whatever the batching and the number of threads.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest

from mlflow_guard.core import hashing, tree_hashing
from mlflow_guard.core.errors import UnsafePath, UsageError, VerificationError
from tests.core.test_hashing import MIB, _write


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Names that sort differently as strings and as path parts; sizes around the read buffer."""
    rnd = os.urandom(3 * MIB + 12345)
    files = {
        "a.b": b"dot",
        "a-b": b"dash",
        "a/b": b"nested",
        "a/b0/c.bin": rnd[:1000],
        "weights/big.safetensors": rnd,
        "weights/exact.bin": rnd[:MIB],
        "weights/just_over.bin": rnd[: MIB + 1],
        "weights/just_under.bin": rnd[: MIB - 1],
        "empty": b"",
        "z/ü-unicode.txt": "grüß".encode(),
    }
    files.update({f"many/{i:03d}.bin": rnd[i : i + 1000 + i] for i in range(150)})
    return _write(tmp_path_factory.mktemp("tree") / "data", files)


def _simple(root: Path) -> list[tuple[str, int, bytes]]:
    files = hashing.list_files(root)
    digests = hashing.hash_entries(files, hashing.Serialization(), workers=1)
    sizes = {f.name: f.size for f in files}
    return [(n, sizes[n], d) for n, d in digests.items()]


@pytest.mark.parametrize("mmap_on", ["1", "0"])
@pytest.mark.parametrize("workers", [1, 2, 5])
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_same_as_list_files_and_hash_entries(
    tree: Path, workers: int, mmap_on: str, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_GUARD_HASH_MMAP", mmap_on)
    monkeypatch.setattr(hashing, "_BATCH_FILES", batch)
    got = tree_hashing.hash_tree(tree, workers=workers)
    assert got == _simple(tree)
    for name, size, digest in got:
        data = (tree / name).read_bytes()
        assert (size, digest) == (len(data), hashlib.sha256(data).digest())
    assert [n for n, _, _ in got][:4] == ["a/b", "a/b0/c.bin", "a-b", "a.b"]


def test_big_file_hands_the_rest_of_its_batch_on(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every file 'big', each batch is split file by file between the threads."""
    want = _simple(tree)
    monkeypatch.setattr(tree_hashing, "_SPLIT_BYTES", 1)
    seen: list[int] = []
    real = hashing._parallel

    def spy(jobs: list[tree_hashing._DirJob], work: Callable[..., None], workers: int) -> None:
        def counted(job: tree_hashing._DirJob, buf: bytearray, queue: object) -> None:
            seen.append(len(job[3]))
            work(job, buf, queue)

        real(jobs, counted, workers)

    monkeypatch.setattr(tree_hashing, "_parallel", spy)
    assert tree_hashing.hash_tree(tree, workers=3) == want
    assert len(seen) > 100  # the 150 files of many/ were not hashed as a few batches


def test_blake3_same_as_hash_entries(tree: Path) -> None:
    got = tree_hashing.hash_tree(tree, "blake3", workers=2)
    files = hashing.list_files(tree)
    want = hashing.hash_entries(files, hashing.Serialization(hash_type="blake3"), workers=2)
    assert [(n, d) for n, _, d in got] == list(want.items())


def test_root_must_be_a_directory_not_a_link(tmp_path: Path) -> None:
    _write(tmp_path / "d", {"x": b"1"})
    (tmp_path / "link").symlink_to(tmp_path / "d")
    (tmp_path / "file").write_bytes(b"")
    for bad in ("link", "file", "missing"):
        with pytest.raises(UsageError, match="is not a directory"):
            tree_hashing.hash_tree(tmp_path / bad)
    with pytest.raises(UsageError, match="unsupported hash algorithm"):
        tree_hashing.hash_tree(tmp_path / "d", "md5")  # type: ignore[arg-type]
    assert tree_hashing.hash_tree(tmp_path / "d") == [("x", 1, hashlib.sha256(b"1").digest())]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert tree_hashing.hash_tree(tmp_path / "empty", workers=3) == []


def test_symlinks_and_special_files_refused_at_listing(tmp_path: Path) -> None:
    _write(tmp_path, {"w": b"1", "sub/x": b"2"})
    (tmp_path / "sub" / "link").symlink_to(tmp_path / "w")
    with pytest.raises(UnsafePath, match="refusing symlink sub/link"):
        tree_hashing.hash_tree(tmp_path)
    (tmp_path / "sub" / "link").unlink()
    (tmp_path / "dirlink").symlink_to(tmp_path / "sub", target_is_directory=True)
    with pytest.raises(UnsafePath, match="refusing symlink dirlink"):
        tree_hashing.hash_tree(tmp_path)
    (tmp_path / "dirlink").unlink()
    os.mkfifo(tmp_path / "sub" / "pipe")
    with pytest.raises(UnsafePath, match="special file sub/pipe"):
        tree_hashing.hash_tree(tmp_path)


_REAL_SCAN = tree_hashing._scan


def _after_listing(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Run ``change`` between the listing and the hashing of :func:`tree_hashing.hash_tree`."""

    def scan_then_change(root: Path) -> list[tree_hashing._DirJob]:
        jobs = _REAL_SCAN(root)
        change()
        return jobs

    monkeypatch.setattr(tree_hashing, "_scan", scan_then_change)


def _swap_tree(tmp_path: Path) -> Path:
    return _write(tmp_path / "d", {f"s/f{i}": bytes([i]) * 5000 for i in range(6)})


def test_file_swapped_for_symlink_or_fifo_after_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _swap_tree(tmp_path)
    f1 = root / "s" / "f1"

    def to_link() -> None:
        f1.unlink()
        f1.symlink_to("/etc/passwd")

    _after_listing(monkeypatch, to_link)
    with pytest.raises(UnsafePath, match=r"refusing symlink .*f1"):
        tree_hashing.hash_tree(root, workers=2)

    f1.unlink()
    f1.write_bytes(b"back")

    def to_fifo() -> None:
        f1.unlink()
        os.mkfifo(f1)  # must not block on open

    _after_listing(monkeypatch, to_fifo)
    with pytest.raises(UnsafePath, match="f1: not a regular file"):
        tree_hashing.hash_tree(root, workers=1)


def test_file_removed_after_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _swap_tree(tmp_path)
    _after_listing(monkeypatch, (root / "s" / "f5").unlink)
    with pytest.raises(VerificationError, match="f5 disappeared"):
        tree_hashing.hash_tree(root, workers=2)


def test_directory_swapped_after_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listed directory replaced by a copy, or by a link to one, is not the listed one."""
    root = _swap_tree(tmp_path)
    sub = root / "s"

    def to_copy() -> None:
        shutil.copytree(sub, tmp_path / "copy")
        shutil.rmtree(sub)
        (tmp_path / "copy").rename(sub)

    _after_listing(monkeypatch, to_copy)
    with pytest.raises(VerificationError, match="s changed between listing and hashing"):
        tree_hashing.hash_tree(root, workers=2)

    def to_link() -> None:
        sub.rename(tmp_path / "elsewhere")
        sub.symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    _after_listing(monkeypatch, to_link)
    with pytest.raises(UnsafePath, match=r"refusing symlink .*/s"):
        tree_hashing.hash_tree(root, workers=2)


def test_parent_directory_swapped_for_a_link_after_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the last component is opened without following links: the identity check covers
    a parent swapped for a link to a look-alike tree."""
    root = _write(tmp_path / "d", {"p/s/f": b"1"})

    def swap_parent() -> None:
        shutil.copytree(root / "p", tmp_path / "twin")
        shutil.rmtree(root / "p")
        (root / "p").symlink_to(tmp_path / "twin", target_is_directory=True)

    _after_listing(monkeypatch, swap_parent)
    with pytest.raises(VerificationError, match="p/s changed between listing and hashing"):
        tree_hashing.hash_tree(root)


@pytest.mark.parametrize("size", [5000, 2 * MIB])  # one read, and the mmap / chunked path
def test_file_rewritten_while_hashed(
    tmp_path: Path, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A same-size write during hashing is caught by the fstat after hashing."""
    monkeypatch.setenv("MLFLOW_GUARD_HASH_MMAP", "0")
    root = _write(tmp_path / "d", {"w.bin": b"\0" * size})
    target = root / "w.bin"
    os.utime(target, ns=(1, 1))  # an old mtime: the tamper below changes it, whatever the tick
    time.sleep(0.05)
    real = os.readv
    done: list[int] = []

    def readv_then_tamper(fd: int, buffers: list[memoryview]) -> int:
        n = real(fd, buffers)
        if not done:
            done.append(n)
            with open(target, "r+b") as f:
                f.write(b"evil")
        return n

    monkeypatch.setattr(os, "readv", readv_then_tamper)
    with pytest.raises(VerificationError, match=r"w\.bin changed while being hashed"):
        tree_hashing.hash_tree(root, workers=1)
    assert done


def test_file_shrunk_while_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _write(tmp_path / "d", {"w.bin": b"x" * 5000})
    monkeypatch.setattr(os, "readv", lambda fd, buffers: 0)
    with pytest.raises(VerificationError, match="file shrank while being hashed"):
        tree_hashing.hash_tree(root)


def test_unreadable_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EACCES on one file (simulated: the tests may run as root) names the file and the reason,
    and stops the other threads."""
    root = _write(tmp_path / "d", {f"s/f{i}": b"1" for i in range(200)})
    real = os.open

    def deny(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if str(path).endswith("f7"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(VerificationError, match=r"d/s/f7 is unreadable: Permission denied") as e:
        tree_hashing.hash_tree(root, workers=2)
    assert isinstance(e.value.__cause__, PermissionError)


@pytest.mark.parametrize(
    "name", ["a/b", "a-b", "x", "", "a//b", "./a", "a/./b", "a/", "/abs", "ü/ß.txt", ".hidden"]
)
def test_resource_order_matches_pathlib(name: str) -> None:
    assert hashing.resource_sort_key(name) == (PurePosixPath(name).parts, -1, -1)
    shard = f"{name}:0:10"
    assert hashing.resource_sort_key(shard, "shards") == (PurePosixPath(name).parts, 0, 10)


@pytest.mark.parametrize("batch", [1, 2, 32])
def test_manifest_order_without_sorting_results(
    tmp_path: Path, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs come out depth first in name order, files and directories interleaved by name."""
    monkeypatch.setattr(hashing, "_BATCH_FILES", batch)
    names = ["x/y", "x.txt", "x-1/z", "x0", "d/e/f", "d/e-f", "d/e.f", "d/e/g", "d/e0", "Z", "é"]
    root = _write(tmp_path / "d", {n: n.encode() for n in names})
    got = [n for n, _, _ in tree_hashing.hash_tree(root, workers=3)]
    assert got == [n for n, _, _ in _simple(root)]
    assert got == sorted(names, key=lambda n: PurePosixPath(n).parts)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_no_descriptor_left_open_after_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error while hashing or while listing leaves no file or directory open."""
    files = {f"a/b/c/f{i}": b"x" for i in range(100)}
    files.update({f"a/b/d/g{i}": b"y" for i in range(100)})
    root = _write(tmp_path / "d", files)
    before = len(os.listdir("/proc/self/fd"))
    real = os.open

    def deny(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if str(path) == "f3":
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", deny)
    monkeypatch.setattr(hashing, "_BATCH_FILES", 2)
    with pytest.raises(VerificationError, match="f3 is unreadable"):
        tree_hashing.hash_tree(root, workers=2)
    monkeypatch.undo()
    (root / "a" / "b" / "d" / "pipe").unlink(missing_ok=True)
    os.mkfifo(root / "a" / "b" / "d" / "pipe")
    with pytest.raises(UnsafePath, match="special file a/b/d/pipe"):
        tree_hashing.hash_tree(root, workers=2)
    assert len(os.listdir("/proc/self/fd")) == before
