"""Every crafted malicious file is flagged with its offending import, and nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_guard.core.scan import scan_directory, scan_file
from tests.scan import corpus

CASES = sorted(corpus.build(Path("/nonexistent/canary")))


@pytest.mark.parametrize("name", CASES)
def test_payload_is_flagged_with_its_import(evil_dir: Path, canary: Path, name: str) -> None:
    expected = corpus.build(canary)[name][1]
    before = (evil_dir / name).read_bytes()
    report = scan_file(evil_dir / name)
    assert not report.safe
    assert expected in report.imports, [f.reason for f in report.findings]
    assert any(expected in f.reason for f in report.findings)
    assert not canary.exists(), "a payload ran during the scan"
    assert (evil_dir / name).read_bytes() == before


def test_directory_scan_flags_every_file(evil_dir: Path, canary: Path) -> None:
    report = scan_directory(evil_dir)
    flagged = {f.path.split("!")[0] for f in report.findings}
    assert flagged == set(CASES)
    assert report.files_scanned == len(CASES)
    assert not canary.exists()


@pytest.mark.parametrize("name", sorted(corpus.malformed(Path("/x"))))
def test_malformed_fails_closed(tmp_path: Path, canary: Path, name: str) -> None:
    (tmp_path / name).write_bytes(corpus.malformed(canary)[name])
    report = scan_file(tmp_path / name)
    assert not report.safe
    assert all(f.path.startswith(name) for f in report.findings)
    assert not canary.exists()


def test_truncated_after_global_still_names_it(tmp_path: Path, canary: Path) -> None:
    (tmp_path / "t.pkl").write_bytes(corpus.malformed(canary)["truncated_after_global.pkl"])
    report = scan_file(tmp_path / "t.pkl")
    reasons = " ".join(f.reason for f in report.findings)
    assert "malformed or truncated" in reasons
    assert report.imports  # the import seen before the cut is still reported


def test_extension_registry_is_refused(tmp_path: Path) -> None:
    (tmp_path / "e.pkl").write_bytes(corpus.malformed(Path("/x"))["ext1.pkl"])
    reasons = [f.reason for f in scan_file(tmp_path / "e.pkl").findings]
    assert any("extension registry" in r for r in reasons)


def test_decompression_cap_is_a_finding(tmp_path: Path) -> None:
    import gzip
    import pickle

    data = gzip.compress(pickle.dumps(b"\x00" * (4 << 20), protocol=4))
    (tmp_path / "bomb.joblib").write_bytes(data)
    report = scan_file(tmp_path / "bomb.joblib", max_bytes=1 << 20)
    assert not report.safe
    assert "scan limit" in report.findings[0].reason
    assert scan_file(tmp_path / "bomb.joblib").safe


def test_symlink_is_refused(tmp_path: Path, evil_dir: Path) -> None:
    (tmp_path / "link.pkl").symlink_to(evil_dir / "eval.pkl")
    report = scan_directory(tmp_path)
    assert [f.path for f in report.findings] == ["link.pkl"]
    assert "symlink" in report.findings[0].reason


def test_cloudpickled_code_is_flagged(tmp_path: Path) -> None:
    import cloudpickle

    class PythonModel:
        def predict(self, x: object) -> object:
            return x

    (tmp_path / "python_model.pkl").write_bytes(cloudpickle.dumps(PythonModel()))
    report = scan_file(tmp_path / "python_model.pkl")
    assert not report.safe
    assert "cloudpickle.cloudpickle._make_function" in report.imports


def test_huge_claimed_length_is_not_allocated(tmp_path: Path) -> None:
    import struct
    import time

    # BINBYTES claiming 4 GiB in a 1 KiB file of unknown type: not a pickle, nothing to report
    (tmp_path / "blob.dat").write_bytes(b"B" + struct.pack("<I", 0xFFFFFFF0) + b"\0" * 1024)
    start = time.monotonic()
    report = scan_file(tmp_path / "blob.dat")
    assert time.monotonic() - start < 2.0
    assert report.safe
    # the same bytes under a pickle name fail closed
    (tmp_path / "blob.pkl").write_bytes((tmp_path / "blob.dat").read_bytes())
    assert "malformed" in scan_file(tmp_path / "blob.pkl").findings[0].reason


def test_text_file_looking_like_a_global_is_not_reported(tmp_path: Path) -> None:
    (tmp_path / "CHANGES").write_text("changes\nsince 1.0\n- fixed things\n")
    assert scan_file(tmp_path / "CHANGES").safe
    (tmp_path / "NOTES").write_text("cos\nsystem\n(S'id'\ntR.")  # but a real payload is
    assert scan_file(tmp_path / "NOTES").imports == ["os.system"]
