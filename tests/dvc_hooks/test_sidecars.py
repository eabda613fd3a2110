"""Sidecar edge cases in a git-only repository (hand-written DVC files; no DVC commands)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.dvc_hooks.conftest import Keys, guard, init_repo, sh, tree_state

pytestmark = pytest.mark.slow


@pytest.fixture
def legacy_repo(tmp_path: Path, dataset_keys: Keys) -> Path:
    """A DVC 2 style record (no ``hash:`` key → md5-dos2unix) written by hand."""
    root = init_repo(tmp_path / "r", dataset_keys, dvc=False)
    data = b"a,b\r\n1,2\r\n"
    (root / "t.csv").write_bytes(data)
    md5 = hashlib.md5(data.replace(b"\r\n", b"\n")).hexdigest()
    (root / "t.csv.dvc").write_text(f"outs:\n- md5: {md5}\n  size: {len(data)}\n  path: t.csv\n")
    sh(["git", "add", "t.csv.dvc"], root)
    return root


def test_legacy_md5_dos2unix_record_signs_and_verifies(
    legacy_repo: Path, dataset_keys: Keys
) -> None:
    proc = guard(legacy_repo, "sign", "t.csv.dvc", "--key", str(dataset_keys.key("data-ci")))
    assert proc.returncode == 0, proc.stderr
    sidecar = json.loads((legacy_repo / "t.csv.dvc.sig").read_text())
    import base64

    statement = json.loads(base64.b64decode(sidecar["payload"]))
    assert statement["predicate"]["outputs"][0]["hash_kind"] == "md5-dos2unix"
    sh(["git", "add", "t.csv.dvc.sig"], legacy_repo)
    assert guard(legacy_repo, "verify", "--staged").returncode == 0
    (legacy_repo / "t.csv").write_bytes(b"a,b\r\n1,3\r\n")
    proc = guard(legacy_repo, "verify", "--staged")
    assert proc.returncode == 1
    assert "changed: t.csv" in proc.stderr


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "is not valid JSON"),
        ('{"payload": "e30=", "payloadType": "application/vnd.in-toto+json"}', "not a DSSE"),
        (
            '{"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": []}',
            "carries no signature",
        ),
        (
            '{"payload": "e30=", "payloadType": "text/plain", "signatures": [{"sig": "AA=="}]}',
            "unexpected DSSE payloadType",
        ),
    ],
)
def test_malformed_sidecar_is_refused_and_nothing_changes(
    legacy_repo: Path, content: str, reason: str
) -> None:
    (legacy_repo / "t.csv.dvc.sig").write_text(content)
    sh(["git", "add", "t.csv.dvc.sig"], legacy_repo)
    before = tree_state(legacy_repo)
    proc = guard(legacy_repo, "verify", "--staged")
    assert proc.returncode == 1
    assert reason in proc.stderr
    assert "t.csv.dvc.sig" in proc.stderr
    assert tree_state(legacy_repo) == before


def test_unstaged_sidecar_does_not_count(legacy_repo: Path, dataset_keys: Keys) -> None:
    assert guard(legacy_repo, "sign", "--key", str(dataset_keys.key("data-ci"))).returncode == 0
    proc = guard(legacy_repo, "verify", "--staged")  # signed in the tree, not in the index
    assert proc.returncode == 1
    assert "t.csv.dvc is not signed: t.csv.dvc.sig is missing" in proc.stderr
    assert guard(legacy_repo, "verify").returncode == 0  # the working tree is fine


def test_orphan_sidecar_is_refused(legacy_repo: Path, dataset_keys: Keys) -> None:
    assert guard(legacy_repo, "sign", "--key", str(dataset_keys.key("data-ci"))).returncode == 0
    (legacy_repo / "old.csv.dvc.sig").write_text("{}")
    sh(["git", "add", "-A"], legacy_repo)
    proc = guard(legacy_repo, "verify")
    assert proc.returncode == 1
    assert "old.csv.dvc.sig signs old.csv.dvc, which is not tracked" in proc.stderr


def test_missing_policy_fails_closed(legacy_repo: Path) -> None:
    (legacy_repo / "guard.yaml").unlink()
    proc = guard(legacy_repo, "verify")
    assert proc.returncode == 2
    assert "guard.yaml" in proc.stderr
