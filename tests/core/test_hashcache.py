"""The opt-in digest cache: never fooled by same-size edits with a restored mtime, never used by
``oms.verify_model``, and ignored when another user could have written it."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from mlflow_guard.core import hashing, keys, oms
from mlflow_guard.core.hashcache import RACY_WINDOW_NS, HashCache
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustStore

FILES = hashing.Serialization()
SHORT_NS = 50_000_000  # 50 ms racy window, so tests need not wait 2 s


def _settled(path: Path, data: bytes) -> None:
    """Write ``data`` and wait until the file is older than the short racy window."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    time.sleep(SHORT_NS * 2 / 1e9)


def _hash(root: Path, cache: HashCache | None) -> dict[str, bytes]:
    return hashing.hash_entries(hashing.list_files(root), FILES, cache=cache, workers=2)


def test_same_size_edit_with_restored_mtime_is_detected(tmp_path: Path) -> None:
    """The DVC state-cache trick (same size, mtime put back) does not fool the cache: ctime."""
    root, store = tmp_path / "m", tmp_path / "cache.json"
    target = root / "data.csv"
    _settled(target, b"label\n0\n1\n")
    cache = HashCache(store, racy_window_ns=SHORT_NS)
    first = _hash(root, cache)
    cache.save()
    assert cache.get(hashing.list_files(root)[0], "sha256") == first["data.csv"]

    before = os.stat(target)
    time.sleep(0.02)
    target.write_bytes(b"label\n1\n1\n")  # poisoned label, same size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(target)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    assert after.st_ctime_ns != before.st_ctime_ns

    reloaded = HashCache(store, racy_window_ns=SHORT_NS)
    second = _hash(root, reloaded)
    assert second["data.csv"] == hashlib.sha256(b"label\n1\n1\n").digest()
    assert second["data.csv"] != first["data.csv"]


def test_replaced_file_with_same_size_and_mtime_is_detected(tmp_path: Path) -> None:
    """Replacing by rename (new inode) with the old mtime is a miss too."""
    root = tmp_path / "m"
    target = root / "w.bin"
    _settled(target, b"A" * 100)
    cache = HashCache(tmp_path / "c.json", racy_window_ns=SHORT_NS)
    _hash(root, cache)
    before = os.stat(target)
    (root / "tmp").write_bytes(b"B" * 100)
    os.utime(root / "tmp", ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(root / "tmp", target)
    assert _hash(root, cache)["w.bin"] == hashlib.sha256(b"B" * 100).digest()


def test_racily_clean_files_are_not_cached(tmp_path: Path) -> None:
    """A file changed within the racy window of its listing is hashed again next time."""
    root = tmp_path / "m"
    (root).mkdir()
    (root / "fresh").write_bytes(b"now")
    cache = HashCache(tmp_path / "c.json")
    assert RACY_WINDOW_NS >= 1_000_000_000
    _hash(root, cache)
    assert cache.get(hashing.list_files(root)[0], "sha256") is None
    cache.save()
    assert not (tmp_path / "c.json").exists()


def _poison(store: Path, root: Path) -> bytes:
    """Write a cache entry with the file's true stat signature but a forged digest."""
    cache = HashCache(store, racy_window_ns=SHORT_NS)
    _hash(root, cache)
    cache.save()
    raw = json.loads(store.read_text())
    forged = hashlib.sha256(b"forged").digest()
    for v in raw["entries"].values():
        v[1] = forged.hex()
    store.write_text(json.dumps(raw))
    store.chmod(0o600)
    return forged


def test_cache_is_really_consulted_and_saved_0600(tmp_path: Path) -> None:
    """Proof that hits skip hashing (hence: never at a trust boundary)."""
    root, store = tmp_path / "m", tmp_path / "c.json"
    _settled(root / "w", b"weights")
    forged = _poison(store, root)
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert _hash(root, HashCache(store))["w"] == forged
    assert _hash(root, None)["w"] == hashlib.sha256(b"weights").digest()
    shards = hashing.Serialization(method="shards", shard_size=4)
    got = hashing.hash_entries(hashing.list_files(root), shards, cache=HashCache(store))
    assert forged not in got.values()


@pytest.mark.parametrize("how", ["group-writable", "foreign-owner", "symlink", "corrupt"])
def test_untrustworthy_cache_file_is_ignored(tmp_path: Path, how: str) -> None:
    root, store = tmp_path / "m", tmp_path / "c.json"
    _settled(root / "w", b"weights")
    _poison(store, root)
    if how == "group-writable":
        store.chmod(0o664)
    elif how == "foreign-owner":
        if os.getuid() != 0:
            pytest.skip("chown to another user needs root")
        os.chown(store, 4242, -1)
    elif how == "symlink":
        store.rename(tmp_path / "elsewhere.json")
        store.symlink_to(tmp_path / "elsewhere.json")
    else:
        store.write_text("{not json")
    assert _hash(root, HashCache(store))["w"] == hashlib.sha256(b"weights").digest()


def test_verify_model_never_uses_a_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``verify_model`` takes no cache: it passes none to hashing and never consults one."""
    assert "cache" not in inspect.signature(oms.verify_model).parameters
    root = tmp_path / "m"
    _settled(root / "w", b"weights")
    key = keys.generate(keys.Algorithm.ECDSA_P256)
    oms.sign_model(root, keys.Signer(key))
    trust = TrustStore.single(key.public_key(), [Purpose.MODEL])

    seen: list[Any] = []
    real = hashing.hash_entries

    def spy(*a: Any, **kw: Any) -> dict[str, bytes]:
        seen.append(kw.get("cache"))
        return real(*a, **kw)

    monkeypatch.setattr(hashing, "hash_entries", spy)
    monkeypatch.setattr(HashCache, "get", lambda *a: pytest.fail("cache consulted"))
    oms.verify_model(root, trust)
    assert seen == [None]
