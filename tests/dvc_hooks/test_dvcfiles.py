"""Unit tests of the DVC file parser (no DVC import): formats, legacy records, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dvc_hooks import dvcfiles
from mlflow_guard.core.errors import UnsafePath

MD5 = "f69f5b72bc79a92dc70c63c9aa142e36"


def test_dvc_file_paths_are_relative_to_its_folder() -> None:
    outs = dvcfiles.parse(
        "data/t.csv.dvc", f"outs:\n- md5: {MD5}\n  size: 4\n  hash: md5\n  path: t.csv\n".encode()
    )
    assert [(o.path, o.hash_kind, o.size, o.is_dir) for o in outs] == [
        ("data/t.csv", "md5", 4, False)
    ]


def test_legacy_record_without_hash_is_md5_dos2unix() -> None:
    (out,) = dvcfiles.parse("t.csv.dvc", f"outs:\n- md5: {MD5}\n  path: t.csv\n".encode())
    assert out.hash_kind == "md5-dos2unix"


def test_dvc_lock_stages() -> None:
    text = (
        "schema: '2.0'\nstages:\n  s:\n    cmd: x\n    outs:\n"
        f"    - path: out\n      md5: {MD5}.dir\n      nfiles: 2\n      hash: md5\n"
    )
    (out,) = dvcfiles.parse("sub/dvc.lock", text.encode())
    assert (out.path, out.is_dir, out.nfiles, out.dvc_file) == ("sub/out", True, 2, "sub/dvc.lock")


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("a.dvc", "outs: [\n", "not valid YAML"),
        ("a.dvc", "- just a list\n", "expected a YAML mapping"),
        ("a.dvc", "outs: []\n", "no 'outs' list"),
        ("a.dvc", "outs:\n- path: a\n", "no valid md5"),
        ("a.dvc", f"outs:\n- path: a\n  md5: {MD5.upper()}\n", "not lower-case hex"),
        ("a.dvc", f"outs:\n- path: a\n  md5: {MD5}\n  hash: sha1\n", "unsupported hash kind"),
        ("a.dvc", f"outs:\n- path: a\n  md5: {MD5}\n  size: -1\n", "not a count"),
        ("dvc.lock", "stages: {}\n", "unsupported dvc.lock format"),
        ("a.dvc", f"wdir: ..\nouts:\n- path: a\n  md5: {MD5}\n", "wdir"),
    ],
)
def test_malformed_files_are_configuration_errors(name: str, text: str, match: str) -> None:
    with pytest.raises(dvcfiles.DvcFileError, match=match) as ei:
        dvcfiles.parse(name, text.encode())
    assert ei.value.exit_code == 2


@pytest.mark.parametrize("path", ["../outside", "/etc/passwd", "s3://bucket/x", "a/../../b"])
def test_outputs_outside_the_repository_are_refused(path: str) -> None:
    with pytest.raises(UnsafePath):
        dvcfiles.parse("a.dvc", f"outs:\n- path: {path}\n  md5: {MD5}\n".encode())


def test_dir_listing_is_checked_against_its_md5(tmp_path: Path) -> None:
    listing = json.dumps([{"md5": MD5, "relpath": "a.txt"}]).encode()
    md5 = hashlib.md5(listing).hexdigest()
    obj = tmp_path / ".dvc" / "cache" / "files" / "md5" / md5[:2] / (md5[2:] + ".dir")
    obj.parent.mkdir(parents=True)
    obj.write_bytes(listing)
    out = dvcfiles.DvcOut("d.dvc", "d", md5 + ".dir", "md5", None, 1)
    assert dvcfiles.dir_listing(tmp_path, out) == {"a.txt": MD5}
    obj.write_bytes(listing.replace(b"a.txt", b"b.txt"))
    with pytest.raises(dvcfiles.DvcFileError, match="does not match md5"):
        dvcfiles.dir_listing(tmp_path, out)
    missing = dvcfiles.DvcOut("d.dvc", "d", "1" * 32 + ".dir", "md5", None, 1)
    assert dvcfiles.dir_listing(tmp_path, missing) is None
