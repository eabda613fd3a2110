"""Red team of ``dvc-guard env`` (ML06): code that runs at start-up, or files the RECORD check
would call "listed" without ever hashing them, must be reported; the check must not hang.

A throwaway venv (no pip; pip of the test interpreter installs a tiny wheel into it) per
module; every test puts the venv back as it was.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dvc_hooks.conftest import ENV, guard, sh
from tests.dvc_hooks.test_env import _build_wheel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("rt-env")
    whl = _build_wheel(d)
    sh([sys.executable, "-m", "venv", "--without-pip", str(d / "v")], d)
    py = d / "v" / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-index"]
    sh([*pip, "--no-deps", str(whl)], d)
    return d / "v"


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def _record(venv: Path) -> Path:
    return _site(venv) / "tinypkg-0.1.dist-info" / "RECORD"


@pytest.fixture
def site(venv: Path) -> Iterator[Path]:
    """site-packages; RECORD restored and files the test adds removed afterwards."""
    s = _site(venv)
    record = _record(venv).read_bytes()
    before = {p for p in s.rglob("*")}
    yield s
    _record(venv).write_bytes(record)
    for p in sorted({p for p in s.rglob("*")} - before, key=lambda p: -len(p.parts)):
        p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
    assert _check(s).returncode == 0


def _check(site: Path) -> subprocess.CompletedProcess[str]:
    return guard(site, "env", "--site-packages", str(site), "--requirements", "/dev/null")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _add_to_record(venv: Path, line: str) -> None:
    with _record(venv).open("a") as f:
        f.write(line + "\n")


def test_record_entry_without_a_hash_does_not_whitelist_a_pth(venv: Path, site: Path) -> None:
    pth = site / "tinypkg" / "zz.pth"
    pth.write_text("import os; os.system('echo pwned')\n")
    _add_to_record(venv, "tinypkg/zz.pth,,")
    proc = _check(site)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"unverifiable: {pth} (tinypkg: RECORD entry without a hash)" in proc.stderr


def test_record_entry_pointing_at_a_device_neither_hangs_nor_passes(venv: Path, site: Path) -> None:
    up = "../" * len(site.parts)
    _add_to_record(venv, f"{up}dev/zero,sha256={_b64(b'')},0")
    fifo = site / "tinypkg" / "pipe.py"
    os.mkfifo(fifo)
    _add_to_record(venv, f"tinypkg/pipe.py,sha256={_b64(b'')},0")
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "dvc-guard"),
            *("env", "--site-packages", str(site), "--requirements", "/dev/null"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"unverifiable: /dev/zero (tinypkg: RECORD entry outside {venv})" in proc.stderr
    assert f"unverifiable: {fifo} (tinypkg: not a regular file)" in proc.stderr


def test_egg_info_without_record_cannot_vouch_for_its_pth(site: Path) -> None:
    info = site / "ghost-1.0-py3.11.egg-info"
    info.mkdir()
    (info / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: ghost\nVersion: 1.0\n")
    (info / "SOURCES.txt").write_text("ghost.pth\n")  # read as a hashless file list
    (site / "ghost.pth").write_text("import os; os.system('echo pwned')\n")
    proc = _check(site)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"no RECORD (nothing verifiable): ghost ({info})" in proc.stderr
    assert f"unlisted (in no RECORD): {site / 'ghost.pth'}" in proc.stderr


def test_dist_info_without_record_is_reported(site: Path) -> None:
    info = site / "empty-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: empty\nVersion: 1.0\n")
    proc = _check(site)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"no RECORD (nothing verifiable): empty ({info})" in proc.stderr


@pytest.mark.parametrize("name", ["sitecustomize.py", "usercustomize.py", "json.py", "os/x.py"])
def test_recorded_start_up_hook_or_stdlib_shadow_is_reported(
    venv: Path, site: Path, name: str
) -> None:
    data = b"import os\n"
    (site / name).parent.mkdir(exist_ok=True)
    (site / name).write_bytes(data)
    _add_to_record(venv, f"{name},sha256={_b64(data)},{len(data)}")  # a RECORD that vouches
    proc = _check(site)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    mod = name.split("/")[0].removesuffix(".py")
    assert f"runs or shadows code at start-up: {site / name} (tinypkg: module {mod!r})" in (
        proc.stderr
    )


def test_sitecustomize_on_pythonpath_is_reported(
    venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "pp"
    extra.mkdir()
    (extra / "sitecustomize.py").write_text("import os\n")
    monkeypatch.setenv("PYTHONPATH", str(extra))
    proc = guard(
        tmp_path, "env", "--python", str(venv / "bin" / "python"), "--requirements", "/dev/null"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"runs or shadows code at start-up: {extra / 'sitecustomize.py'} (on sys.path)" in (
        proc.stderr
    )
    monkeypatch.delenv("PYTHONPATH")
    clean = guard(
        tmp_path, "env", "--python", str(venv / "bin" / "python"), "--requirements", "/dev/null"
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_unlisted_egg_link_is_reported(site: Path) -> None:
    link = site / "evil.egg-link"
    link.write_text("/tmp/evil\n.\n")
    proc = _check(site)
    assert proc.returncode == 1
    assert f"unlisted (in no RECORD): {link}" in proc.stderr


def test_editable_install_is_named_as_unverified(venv: Path, site: Path) -> None:
    direct = site / "tinypkg-0.1.dist-info" / "direct_url.json"
    original = direct.read_bytes()
    data = b'{"url": "file:///src/tinypkg", "dir_info": {"editable": true}}'
    direct.write_bytes(data)
    rel = "tinypkg-0.1.dist-info/direct_url.json"
    lines = [
        f"{rel},sha256={_b64(data)},{len(data)}" if ln.startswith(rel + ",") else ln
        for ln in _record(venv).read_text().splitlines()
    ]
    _record(venv).write_text("\n".join(lines) + "\n")
    try:
        proc = _check(site)
    finally:
        direct.write_bytes(original)
    assert proc.returncode == 0, proc.stderr
    assert "editable install, its code is outside site-packages and not verified: " in proc.stdout
    assert "tinypkg: file:///src/tinypkg" in proc.stdout
