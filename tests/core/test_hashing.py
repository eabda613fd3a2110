"""Hashing: byte-identical to OpenSSF ``model_signing`` 1.1.1, parallel, and safe against swaps.

The reference is the real ``model_signing.hashing`` API on the same tree, never a re-statement
of its format. Every code path (mmap and read, one and several threads, aligned and unaligned
shard offsets) must give the same manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import threading
from pathlib import Path

import blake3
import pytest

from mlflow_guard.cli import run as cli_run
from mlflow_guard.cli.cmd_verify import Progress
from mlflow_guard.core import file_hashing, hashing, keys
from mlflow_guard.core.errors import UnsafePath, UsageError, VerificationError

MIB = 1024 * 1024


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nested names that sort differently as strings and as path parts, sizes around 1 MiB."""
    rnd = os.urandom(3 * MIB + 12345)
    return _write(
        tmp_path_factory.mktemp("tree") / "model",
        {
            "a.b": b"dot",
            "a-b": b"dash",
            "a/b": b"nested",
            "a/b0/c.bin": rnd[:1000],
            "weights/big.safetensors": rnd,
            "weights/exact.bin": rnd[: 2 * MIB],
            "weights/just_under.bin": rnd[: MIB - 1],
            "empty": b"",
            "z/ü-unicode.txt": "grüß".encode(),
        },
    )


def _reference(
    tree: Path, shards: int | None = None, algo: str = "sha256"
) -> list[tuple[str, str]]:
    from model_signing import hashing as ms_hashing

    cfg = ms_hashing.Config()
    if shards:
        cfg = cfg.use_shard_serialization(hashing_algorithm=algo, shard_size=shards)  # type: ignore[arg-type]
    else:
        cfg = cfg.use_file_serialization(hashing_algorithm=algo)  # type: ignore[arg-type]
    manifest = cfg.hash(tree)
    return [(r.identifier, r.digest.digest_hex) for r in manifest.resource_descriptors()]


def _ours(
    tree: Path, ser: hashing.Serialization, workers: int | None = None
) -> list[tuple[str, str]]:
    out = hashing.hash_entries(hashing.list_files(tree), ser, workers=workers)
    return [(k, v.hex()) for k, v in out.items()]


@pytest.mark.parametrize("mmap_on", ["1", "0"])
@pytest.mark.parametrize("workers", [1, 3])
def test_files_identical_to_model_signing(
    tree: Path, workers: int, mmap_on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_GUARD_HASH_MMAP", mmap_on)
    ours = _ours(tree, hashing.Serialization(), workers)
    assert ours == _reference(tree)
    for name, digest in ours:
        assert digest == hashlib.sha256((tree / name).read_bytes()).hexdigest()
    assert [n for n, _ in ours][:4] == ["a/b", "a/b0/c.bin", "a-b", "a.b"]


@pytest.mark.parametrize("shard_size", [7, 1_000_003, MIB])
@pytest.mark.parametrize("mmap_on", ["1", "0"])
def test_shards_identical_to_model_signing(
    tree: Path, shard_size: int, mmap_on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unaligned offsets (1_000_003) exercise the mmap page alignment; empty files get no shard."""
    if shard_size == 7:
        small = tree.parent / "small"
        if not small.exists():
            _write(small, {"x": b"0123456789abcdef", "y/z": b"1234567", "e": b""})
        tree = small
    monkeypatch.setenv("MLFLOW_GUARD_HASH_MMAP", mmap_on)
    ser = hashing.Serialization(method="shards", shard_size=shard_size)
    ours = _ours(tree, ser, workers=2)
    assert ours == _reference(tree, shards=shard_size)
    assert not any(n.startswith(("empty:", "e:")) for n, _ in ours)


def test_blake3_files_identical_to_model_signing(tree: Path) -> None:
    ours = _ours(tree, hashing.Serialization(hash_type="blake3"), workers=2)
    assert ours == _reference(tree, algo="blake3")
    big = tree / "weights/big.safetensors"
    assert dict(ours)["weights/big.safetensors"] == blake3.blake3(big.read_bytes()).hexdigest()


def test_hash_range_and_file(tree: Path) -> None:
    big = tree / "weights/big.safetensors"
    data = big.read_bytes()
    assert hashing.hash_file(big) == hashlib.sha256(data).digest()
    got = hashing.hash_range(big, 4097, 2 * MIB + 5, "sha256")
    assert got == hashlib.sha256(data[4097 : 2 * MIB + 5]).digest()
    with pytest.raises(VerificationError, match="expected at least"):
        hashing.hash_range(big, 0, len(data) + 1, "sha256")
    with pytest.raises(UsageError, match="unsupported hash algorithm"):
        hashing.hash_entries(hashing.list_files(tree), hashing.Serialization(hash_type="md5"))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="shard_size"):
        hashing.hash_entries(
            hashing.list_files(tree), hashing.Serialization(method="shards", shard_size=0)
        )


def test_progress_gets_total_once_and_every_byte(tree: Path) -> None:
    totals: list[int] = []
    seen: list[int] = []
    lock = threading.Lock()

    class Sink:
        def set_total(self, n: int) -> None:
            totals.append(n)

        def __call__(self, n: int) -> None:
            with lock:
                seen.append(n)

    files = hashing.list_files(tree)
    hashing.hash_entries(files, hashing.Serialization(), workers=2, progress=Sink())
    assert totals == [sum(f.size for f in files)]
    assert sum(seen) == totals[0]


def test_progress_bar_stays_off_without_a_tty() -> None:
    with Progress("x", enabled=True) as p:  # pytest captures stderr: not a TTY
        p.set_total(10**12)
        p(5)
        assert p._bar is None


def test_ignore_paths_cover_children_not_lookalikes(tmp_path: Path) -> None:
    _write(tmp_path, {"a/x": b"1", "ab": b"2", "a.txt": b"3", "keep/a": b"4"})
    names = [f.name for f in hashing.list_files(tmp_path, ["a"])]
    assert names == ["a.txt", "ab", "keep/a"]
    for bad in ("../x", "/etc", ".", "a/../../b"):
        with pytest.raises(UsageError, match="must be relative"):
            hashing.normalize_ignore_paths([bad])


def test_symlink_and_fifo_refused_at_listing(tmp_path: Path) -> None:
    _write(tmp_path, {"w": b"1"})
    (tmp_path / "link").symlink_to(tmp_path / "w")
    with pytest.raises(UnsafePath, match="refusing symlink link"):
        hashing.list_files(tmp_path)
    (tmp_path / "link").unlink()
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UnsafePath, match="special file pipe"):
        hashing.list_files(tmp_path)


def _swap_cases(tmp_path: Path) -> list[hashing.FileEntry]:
    _write(tmp_path, {f"f{i}": bytes([i]) * 5000 for i in range(6)})
    return hashing.list_files(tmp_path)


def test_file_replaced_after_listing_is_refused(tmp_path: Path) -> None:
    files = _swap_cases(tmp_path)
    before = (tmp_path / "f3").read_bytes()
    (tmp_path / "new").write_bytes(b"X" * 5000)
    os.replace(tmp_path / "new", tmp_path / "f3")  # same size, other inode
    with pytest.raises(VerificationError, match="f3 changed between listing and hashing"):
        hashing.hash_entries(files, hashing.Serialization(), workers=3)
    assert before != (tmp_path / "f3").read_bytes()


def test_file_swapped_for_symlink_or_fifo_after_listing(tmp_path: Path) -> None:
    files = _swap_cases(tmp_path)
    (tmp_path / "f1").unlink()
    (tmp_path / "f1").symlink_to("/etc/passwd")
    with pytest.raises(UnsafePath, match="refusing symlink"):
        hashing.hash_entries(files, hashing.Serialization(), workers=2)
    (tmp_path / "f1").unlink()
    os.mkfifo(tmp_path / "f1")  # must not block on open
    with pytest.raises(UnsafePath, match="not a regular file"):
        hashing.hash_entries(files, hashing.Serialization(), workers=1)


def test_file_removed_after_listing(tmp_path: Path) -> None:
    files = _swap_cases(tmp_path)
    (tmp_path / "f5").unlink()
    with pytest.raises(VerificationError, match="f5 disappeared"):
        hashing.hash_entries(files, hashing.Serialization(), workers=2)


@pytest.mark.parametrize("mmap_on", ["1", "0"])
def test_file_rewritten_while_hashed(
    tmp_path: Path, mmap_on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write in the middle of hashing (same size) is caught by the fstat after hashing."""
    monkeypatch.setenv("MLFLOW_GUARD_HASH_MMAP", mmap_on)
    monkeypatch.setattr(file_hashing, "_WINDOW", MIB)
    target = tmp_path / "w.bin"
    target.write_bytes(b"\0" * (3 * MIB))
    files = hashing.list_files(tmp_path)
    done: list[int] = []

    def tamper(n: int) -> None:
        if not done:
            done.append(n)
            with open(target, "r+b") as f:
                f.seek(2 * MIB + 10)
                f.write(b"evil")

    with pytest.raises(VerificationError, match="changed while being hashed"):
        hashing.hash_entries(files, hashing.Serialization(), workers=1, progress=tamper)
    assert done


def test_cli_refuses_blake3_shards_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """model_signing hashes blake3 'shards' as files: such a signature would never cross over."""
    model = _write(tmp_path / "m", {"w": b"1"})
    args = ["sign", str(model), "--key", str(tmp_path / "none.pem"), "--json"]
    code = cli_run([*args, "--shards", "--hash", "blake3"])
    out = json.loads(capsys.readouterr().out)
    assert (code, out["error"]) == (2, "UsageError")
    assert "--shards cannot be combined with --hash blake3" in out["summary"]
    assert sorted(p.name for p in model.iterdir()) == ["w"]


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("flag", [None, "--quiet", "--json"])
def test_cli_progress_bar_only_on_a_tty_without_quiet_or_json(
    tmp_path: Path, flag: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    with open(model / "w.bin", "wb") as f:
        f.truncate(65 * MIB)  # sparse: big enough for a bar, cheap to hash
    key = tmp_path / "k.pem"
    key.write_bytes(keys.private_pem(keys.generate()))
    err = _TTY()
    monkeypatch.setattr(sys, "stderr", err)
    argv = ["sign", str(model), "--key", str(key)] + ([flag] if flag else [])
    assert cli_run(argv) == 0
    assert ("hashing" in err.getvalue()) is (flag is None)
    assert (model / "model.sig").is_file()
