"""dvc-guard env (ML06) on a throwaway venv holding a tiny wheel built here, installed by pip.

The venv is created without pip (fast, offline) and pip of the test interpreter installs into
it (``pip --python``); pip writes the RECORD the check later verifies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import zipfile
from pathlib import Path

import pytest

from tests.dvc_hooks.conftest import guard, sh

pytestmark = pytest.mark.slow


def _build_wheel(out: Path) -> Path:
    """A pure-Python wheel for package ``tinypkg`` (what a build backend would write)."""
    files = {
        "tinypkg/__init__.py": b"def answer():\n    return 42\n",
        "tinypkg/util.py": b"VALUE = 1\n",
        "tinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tinypkg-0.1.dist-info/RECORD,,")
    files["tinypkg-0.1.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    whl = out / "tinypkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return whl


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("env")
    whl = _build_wheel(d)
    sh([sys.executable, "-m", "venv", "--without-pip", str(d / "v")], d)
    py = d / "v" / "bin" / "python"
    sh(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            str(whl),
        ],
        d,
    )
    return d / "v"


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def test_clean_venv_passes_and_audit_is_skipped_not_passed(venv: Path, tmp_path: Path) -> None:
    proc = guard(
        tmp_path,
        "env",
        "--python",
        str(venv / "bin" / "python"),
        "--json",
        "--requirements",
        "/dev/null",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["distributions"] == 1
    assert out["files_checked"] >= 4  # the wheel's files plus what pip adds (INSTALLER, …)
    assert out["audit"].startswith("skipped (offline)")
    text = guard(
        tmp_path, "env", "--site-packages", str(_site(venv)), "--requirements", "/dev/null"
    )
    assert "vulnerability audit: skipped (offline)" in text.stdout
    assert "pass" not in text.stdout.lower()


def test_one_line_edit_to_an_installed_file_is_detected(venv: Path, tmp_path: Path) -> None:
    target = _site(venv) / "tinypkg" / "util.py"
    original = target.read_bytes()
    target.write_bytes(b"VALUE = 2\n")  # same size
    try:
        proc = guard(
            tmp_path, "env", "--site-packages", str(_site(venv)), "--requirements", "/dev/null"
        )
        assert proc.returncode == 1
        assert f"modified (sha256 differs from RECORD): {target} (tinypkg)" in proc.stderr
        assert "vulnerability audit: skipped (offline)" in proc.stderr
    finally:
        target.write_bytes(original)


def test_injected_pth_and_stray_module_are_reported(venv: Path, tmp_path: Path) -> None:
    site = _site(venv)
    pth, stray = site / "zz_evil.pth", site / "tinypkg" / "backdoor.py"
    pth.write_text("import os; os.system('echo pwned')\n")
    stray.write_text("x = 1\n")
    try:
        proc = guard(tmp_path, "env", "--site-packages", str(site), "--requirements", "/dev/null")
        assert proc.returncode == 1
        assert f"unlisted (in no RECORD): {pth}" in proc.stderr
        assert f"unlisted (in no RECORD): {stray}" in proc.stderr
        assert "2 unlisted file(s)" in proc.stderr
    finally:
        pth.unlink()
        stray.unlink()
    assert (
        guard(
            tmp_path, "env", "--site-packages", str(site), "--requirements", "/dev/null"
        ).returncode
        == 0
    )


def test_requirement_files_must_be_hash_pinned(tmp_path: Path) -> None:
    good = tmp_path / "requirements.txt"
    good.write_text(
        "# locked\n--index-url https://pypi.org/simple\n"
        "pandas==3.1.1 \\\n    --hash=sha256:" + "a" * 64 + "\n"
    )
    proc = guard(tmp_path, "env", "--no-site", "--requirements", str(good))
    assert proc.returncode == 0, proc.stderr
    bad = tmp_path / "requirements.lock"
    bad.write_text("numpy==2.4.6\nscipy>=1.0 --hash=sha256:" + "b" * 64 + "\n")
    proc = guard(
        tmp_path, "env", "--no-site", "--requirements", str(good), "--requirements", str(bad)
    )
    assert proc.returncode == 1
    assert f"not hash-pinned: {bad}: numpy==2.4.6 (no --hash=sha256:…)" in proc.stderr
    assert f"not hash-pinned: {bad}: scipy>=1.0 (no exact '==' version)" in proc.stderr
