"""dvc-guard sign/verify/status in a real git + DVC repository (dvc add, dvc repro)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.dvc_hooks.conftest import BIN, Keys, guard, sh, tree_state

pytestmark = pytest.mark.slow


def restore(root: Path, *, data: bool = False) -> None:
    """Back to the committed, signed state."""
    sh(["git", "reset", "-q", "--hard"], root)
    sh(["git", "clean", "-fdq"], root)
    if data:
        sh(["dvc", "checkout", "-q", "-f"], root)
    assert guard(root, "verify").returncode == 0


def test_signed_repo_verifies_every_output(dvc_repo: Path) -> None:
    sidecars = sorted(p.relative_to(dvc_repo).as_posix() for p in dvc_repo.rglob("*.sig"))
    assert sidecars == ["data/images.dvc.sig", "data/train.csv.dvc.sig", "dvc.lock.sig"]
    proc = guard(dvc_repo, "verify", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {v["dvc_file"] for v in out["verified"]} == {
        "data/images.dvc",
        "data/train.csv.dvc",
        "dvc.lock",
    }
    assert out["files"] == 8  # train.csv, 6 images, features.csv
    assert {v["signer"] for v in out["verified"]} == {"data-ci"}
    assert guard(dvc_repo, "verify", "--staged").returncode == 0
    alias = sh([str(BIN / "mlflow-guard"), "data", "verify", "--no-data"], dvc_repo, check=False)
    assert alias.returncode == 0, alias.stderr
    status = json.loads(guard(dvc_repo, "status", "--json").stdout)
    assert status["ok"]
    assert {r["state"] for r in status["datasets"]} == {"ok"}


def test_same_size_edit_with_restored_mtime_is_blocked(dvc_repo: Path) -> None:
    data = dvc_repo / "data" / "train.csv"
    assert guard(dvc_repo, "verify", "--cache").returncode == 0  # warm the digest cache
    original, st = data.read_bytes(), data.stat()
    poisoned = bytearray(original)
    i = poisoned.index(b",1\n")
    poisoned[i + 1] = ord("0")
    with open(data, "r+b") as f:  # in place: same inode, same size
        f.write(poisoned)
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert data.stat().st_size == st.st_size
    assert data.stat().st_mtime_ns == st.st_mtime_ns
    # DVC's own state cache (inode, mtime, size) is fooled ...
    assert "up to date" in sh(["dvc", "status"], dvc_repo).stdout
    # ... dvc-guard is not, with or without its digest cache (ctime changed).
    for mode in ("--cache", "--no-cache"):
        proc = guard(dvc_repo, "verify", mode, "--json")
        assert proc.returncode == 1, proc.stdout
        assert "changed: data/train.csv" in proc.stdout
    proc = guard(dvc_repo, "verify", "--staged")
    assert proc.returncode == 1
    assert "changed: data/train.csv" in proc.stderr
    data.write_bytes(original)
    assert guard(dvc_repo, "verify", "--cache").returncode == 0


def test_new_unsigned_dvc_file_is_blocked(dvc_repo: Path) -> None:
    (dvc_repo / "data" / "extra.csv").write_text("a,b\n1,2\n")
    sh(["dvc", "add", "-q", "data/extra.csv"], dvc_repo)
    proc = guard(dvc_repo, "verify")  # not yet added to git: the working tree still counts
    assert proc.returncode == 1
    assert "data/extra.csv.dvc is not signed" in proc.stderr
    sh(["git", "add", "-A"], dvc_repo)
    before = tree_state(dvc_repo)
    proc = guard(dvc_repo, "verify", "--staged")
    assert proc.returncode == 1
    assert "data/extra.csv.dvc is not signed: data/extra.csv.dvc.sig is missing" in proc.stderr
    assert tree_state(dvc_repo) == before
    restore(dvc_repo)


def test_deleted_output_is_detected(dvc_repo: Path) -> None:
    sh(["git", "rm", "-q", "data/train.csv.dvc"], dvc_repo)
    proc = guard(dvc_repo, "verify", "--staged")
    assert proc.returncode == 1
    assert "deleted output: data/train.csv.dvc is removed" in proc.stderr
    sh(["git", "rm", "-q", "data/train.csv.dvc.sig"], dvc_repo)
    proc = guard(dvc_repo, "verify", "--staged")
    assert proc.returncode == 0, proc.stderr
    assert "note: deleted output: data/train.csv.dvc" in proc.stdout
    restore(dvc_repo)
    shutil.rmtree(dvc_repo / "data" / "images" / "sub")
    proc = guard(dvc_repo, "verify", "--json")
    assert proc.returncode == 1
    assert "removed: data/images/sub/x.bin" in proc.stdout
    shutil.rmtree(dvc_repo / "data" / "images")
    proc = guard(dvc_repo, "verify")
    assert proc.returncode == 1
    assert "data directory is not in the workspace" in proc.stderr
    restore(dvc_repo, data=True)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("eve", "not a dataset signer"),
        ("old", "is revoked"),
        ("expired", "expired at"),
        ("model", "not for 'dataset'"),
    ],
)
def test_signature_by_untrusted_key_is_blocked(
    dvc_repo: Path, dataset_keys: Keys, key: str, reason: str
) -> None:
    # Ad-hoc signing with a key trusted for nothing here; the sign command itself succeeds.
    sh(
        [str(BIN / "dvc-guard"), "sign", "data/train.csv.dvc", "--key", str(dataset_keys.key(key))],
        dvc_repo,
    )
    sh(["git", "add", "-A"], dvc_repo)
    before = tree_state(dvc_repo)
    proc = guard(dvc_repo, "verify", "--staged")
    assert proc.returncode == 1
    assert reason in proc.stderr
    assert tree_state(dvc_repo) == before
    restore(dvc_repo)


def test_sidecar_copied_from_another_output_is_blocked(dvc_repo: Path) -> None:
    shutil.copy(dvc_repo / "data/images.dvc.sig", dvc_repo / "data/train.csv.dvc.sig")
    proc = guard(dvc_repo, "verify", "data/train.csv.dvc")
    assert proc.returncode == 1
    assert "is the signature of another DVC file" in proc.stderr
    restore(dvc_repo)


def test_changed_dvc_record_without_resigning_is_blocked(dvc_repo: Path) -> None:
    (dvc_repo / "data" / "images" / "new.bin").write_bytes(b"new")
    sh(["dvc", "add", "-q", "data/images"], dvc_repo)
    proc = guard(dvc_repo, "verify", "data/images.dvc")
    assert proc.returncode == 1
    assert "signs another version of data/images.dvc" in proc.stderr
    assert "signed md5" in proc.stderr
    restore(dvc_repo, data=True)


def test_stage_output_in_dvc_lock_is_verified(dvc_repo: Path) -> None:
    (dvc_repo / "features.csv").write_text("tampered\n")
    proc = guard(dvc_repo, "verify", "--json")
    assert proc.returncode == 1
    assert "changed: features.csv" in proc.stdout
    assert "dvc.lock" in proc.stdout
    restore(dvc_repo, data=True)


def test_malformed_dvc_file_is_a_clear_error_and_changes_nothing(dvc_repo: Path) -> None:
    (dvc_repo / "data" / "train.csv.dvc").write_text("outs: [\n  - md5: zz\n")
    before = tree_state(dvc_repo)
    proc = guard(dvc_repo, "verify")
    assert proc.returncode == 2
    assert "data/train.csv.dvc is not valid YAML" in proc.stderr
    assert tree_state(dvc_repo) == before
    restore(dvc_repo)


def test_special_file_in_a_data_directory_is_refused(dvc_repo: Path) -> None:
    fifo = dvc_repo / "data" / "images" / "pipe"
    os.mkfifo(fifo)
    try:
        proc = guard(dvc_repo, "verify", "data/images.dvc")
        assert proc.returncode == 1
        assert "refusing special file" in proc.stderr
    finally:
        fifo.unlink()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_data_file_is_reported(dvc_repo: Path) -> None:
    f = dvc_repo / "data" / "images" / "0.bin"
    f.chmod(0)
    try:
        proc = guard(dvc_repo, "verify", "data/images.dvc")
        assert proc.returncode == 1
        assert "cannot read data file" in proc.stderr
    finally:
        f.chmod(0o644)


@pytest.mark.parametrize("mode", ["--no-cache", "--cache"])
def test_unreadable_data_file_is_reported_even_as_root(
    dvc_repo: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EACCES simulated on one file (root reads any file): both hashing paths, the cold
    one-pass tree and the listed one behind the cache, give the same clear error."""
    real = os.open

    def deny(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if str(path).endswith("3.bin"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", deny)
    proc = guard(dvc_repo, "verify", mode, "data/images.dvc")
    assert proc.returncode == 1
    assert "data/images: cannot read data file: Permission denied" in proc.stderr
    assert "images/3.bin is unreadable" in proc.stderr


def test_cold_and_cached_digests_are_identical(dvc_repo: Path) -> None:
    """The one-pass cold path and the listed path (with or without a cache) agree, and both
    match what was signed."""
    from dvc_hooks import dvcfiles, manifests, workspace
    from mlflow_guard.core.hashcache import HashCache

    (out,) = dvcfiles.parse("data/images.dvc", (dvc_repo / "data/images.dvc").read_bytes())
    cold = workspace.digests(dvc_repo, out)
    cache = HashCache(dvc_repo / ".git" / "test-cache.json")
    listed = workspace.digests(dvc_repo, out, cache=cache, workers=1)
    assert cold == listed
    assert sorted(cold) == ["0.bin", "1.bin", "2.bin", "3.bin", "4.bin", "sub/x.bin"]
    model = manifests.hash_output(dvc_repo, out)
    assert {f.path: (f.sha256, f.size) for f in model.files} == cold


def test_sign_refuses_when_workspace_differs_from_dvc_record(
    dvc_repo: Path, dataset_keys: Keys
) -> None:
    (dvc_repo / "data" / "images" / "0.bin").write_bytes(b"not what dvc recorded")
    before = tree_state(dvc_repo)
    proc = guard(dvc_repo, "sign", "data/images.dvc", "--key", str(dataset_keys.key("data-ci")))
    assert proc.returncode == 1
    assert "workspace differs from what DVC recorded" in proc.stderr
    assert "changed: data/images/0.bin" in proc.stderr
    assert tree_state(dvc_repo) == before
    proc = guard(dvc_repo, "sign", "data/images.dvc")
    assert proc.returncode == 2
    assert "no signing key given" in proc.stderr
    restore(dvc_repo, data=True)
