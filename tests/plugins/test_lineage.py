"""Lineage collected at run start: git, DVC inputs (with signed sha256), environment."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_guard.lineage import dvc, environment, snapshot
from mlflow_guard.lineage.git import strip_credentials
from tests.plugins.conftest import Workspace, fresh_python, git, run

pytestmark = pytest.mark.slow
P = "guard.lineage."


def _run_tags() -> dict[str, str]:
    import mlflow

    with mlflow.start_run() as r:
        pass
    return dict(mlflow.get_run(r.info.run_id).data.tags)


def test_tags_match_git_and_signed_dataset(in_workspace: Workspace) -> None:
    tags = _run_tags()
    assert tags[P + "status"] == "ok", tags.get(P + "problems")
    assert tags[P + "git.commit"] == git(in_workspace.repo, "rev-parse", "HEAD")
    assert tags[P + "git.branch"] == "main"
    assert tags[P + "git.dirty"] == "false"
    assert P + "git.diff_sha256" not in tags
    assert tags[P + "git.remote_url"] == "https://example.com/org/repo.git"
    assert "s3cret" not in json.dumps(tags)
    datasets = json.loads(tags[P + "dvc.datasets"])
    assert [d["path"] for d in datasets] == ["data/train.csv"]
    want = hashlib.sha256(in_workspace.dataset.read_bytes()).hexdigest()
    assert datasets[0]["file_sha256"] == want
    assert datasets[0]["hash_kind"] == "md5"
    assert len(datasets[0]["sha256"]) == 64
    assert tags[P + "env.sha256"] == environment.fingerprint().sha256


def test_dirty_flag_and_diff_digest_follow_edits(in_workspace: Workspace) -> None:
    readme = in_workspace.repo / "train.py"
    readme.write_text("print('v1')\n")
    first = _run_tags()
    assert first[P + "git.dirty"] == "true"
    readme.write_text("print('v2')\n")
    second = _run_tags()
    assert second[P + "git.dirty"] == "true"
    assert first[P + "git.diff_sha256"] != second[P + "git.diff_sha256"]


def test_lineage_problem_is_recorded_and_run_completes(in_workspace: Workspace) -> None:
    bad = in_workspace.repo / "broken.dvc"
    bad.write_text("outs: [ {path: x, md5: \n")
    tags = _run_tags()
    assert tags[P + "status"] == "partial"
    assert "broken.dvc: unreadable" in tags[P + "problems"]
    assert tags[P + "git.commit"]


def test_outside_git_and_dvc_still_tags_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    snap = snapshot.collect(tmp_path)
    tags = snap.tags()
    assert snap.git is None
    assert not snap.dvc_root
    assert tags[P + "status"] == "ok"
    assert P + "git.commit" not in tags
    assert P + "dvc.outputs" not in tags
    assert tags[P + "env.sha256"]


def test_dvc_lock_and_legacy_entries(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  prep:\n    cmd: x\n    outs:\n"
        "    - {path: out/feat.parquet, md5: 0123456789abcdef0123456789abcdef, size: 10, "
        "hash: md5}\n"
    )
    (tmp_path / "old.csv.dvc").write_text(
        "outs:\n- md5: fedcba9876543210fedcba9876543210\n  path: old.csv\n"
    )
    outs, problems = dvc.collect(tmp_path)
    assert problems == []
    by_path = {o.path: o for o in outs}
    assert by_path["out/feat.parquet"].source == "dvc.lock:prep"
    assert by_path["out/feat.parquet"].hash_kind == "md5"
    assert by_path["old.csv"].hash_kind == "md5-dos2unix"
    assert by_path["old.csv"].sha256 == ""


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("https://alice:pw@host/r.git", "https://host/r.git"),
        ("https://ghp_token@host:8443/r.git", "https://host:8443/r.git"),
        ("git@github.com:org/r.git", "github.com:org/r.git"),
        ("https://host/r.git", "https://host/r.git"),
    ],
)
def test_remote_credentials_stripped(url: str, want: str) -> None:
    assert strip_credentials(url) == want


def _wheel(folder: Path, version: str) -> Path:
    """A minimal, valid pure-Python wheel (PEP 427) for ``guardprobe`` — no network, no build."""
    import base64
    import zipfile

    files = {
        "guardprobe/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"guardprobe-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: guardprobe\nVersion: {version}\n"
        ).encode(),
        f"guardprobe-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = f"guardprobe-{version}.dist-info/RECORD"
    lines = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    lines.append(f"{record},,")
    path = folder / f"guardprobe-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(record, "\n".join(lines) + "\n")
    return path


def test_env_digest_changes_when_a_package_version_changes(tmp_path: Path) -> None:
    """pip-install a real wheel in two versions into a folder on sys.path; digests differ."""
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--upgrade"]
    code = (
        f"import sys; sys.path.insert(0, {str(target)!r}); "
        "from mlflow_guard.lineage import environment as e; f = e.fingerprint(); "
        "print(f.sha256, [d for d in f.distributions if d.startswith('guardprobe')])"
    )
    digests = []
    for version in ("1.0", "2.0"):
        wheel = _wheel(tmp_path, version)
        run([*pip, "--target", str(target), str(wheel)], tmp_path)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split(" ", 1)
        assert f"guardprobe=={version}" in out[1]
        digests.append(out[0])
    assert digests[0] != digests[1]


def test_environment_cache_tracks_sys_path_changes(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "probe_pkg-1.0.dist-info").mkdir(parents=True)
    paths = [str(site)]
    first = environment.fingerprint(paths)
    assert "probe-pkg==1.0" in first.distributions
    (site / "probe_pkg-1.0.dist-info").rename(site / "probe_pkg-1.1.dist-info")
    second = environment.fingerprint(paths)
    assert "probe-pkg==1.1" in second.distributions
    assert first.sha256 != second.sha256


def test_provider_resolves_in_fresh_interpreter(workspace: Workspace, tmp_path: Path) -> None:
    code = (
        "import mlflow\n"
        "from mlflow.tracking.context.registry import resolve_tags\n"
        "t = resolve_tags()\n"
        "print(t['guard.lineage.git.commit'])\n"
    )
    p = fresh_python(code, workspace.repo)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == git(workspace.repo, "rev-parse", "HEAD")


_VALUES = ["train.csv", "data/x.csv", "abc123", "0123", "1.5", "true", "No", "~", "a b", "'q'"]


@settings(max_examples=150, deadline=None)
@given(
    entries=st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["md5", "size", "hash", "path", "nfiles", "cache"]),
                st.sampled_from([*_VALUES, "42", "md5"]),
            ),
            min_size=1,
            max_size=4,
        ),
        min_size=1,
        max_size=3,
    )
)
def test_dvc_fast_path_agrees_with_yaml(entries: list[list[tuple[str, str]]]) -> None:
    """Whenever the fast parser answers, it answers exactly what YAML says."""
    import yaml

    lines = ["outs:"]
    for entry in entries:
        for i, (k, v) in enumerate(entry):
            lines.append(f"{'- ' if i == 0 else '  '}{k}: {v}")
    text = "\n".join(lines) + "\n"
    fast = dvc._fast_dvc(text)
    if fast is not None:
        assert fast == yaml.safe_load(text)


def test_dvc_cache_sees_edits(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    f = tmp_path / "a.csv.dvc"
    f.write_text("outs:\n- md5: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n  path: a.csv\n")
    assert dvc.collect(tmp_path)[0][0].md5 == "a" * 32
    f.write_text("outs:\n- md5: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n  path: a.csv\n")
    assert dvc.collect(tmp_path)[0][0].md5 == "b" * 32


def test_dvc_disk_cache_reused_invalidated_and_never_trusted_blindly(tmp_path: Path) -> None:
    from mlflow_guard.lineage import _diskcache

    (tmp_path / ".dvc").mkdir()
    f = tmp_path / "a.csv.dvc"
    f.write_text("outs:\n- md5: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n  path: a.csv\n")
    dvc.collect(tmp_path)
    cache = tmp_path / _diskcache.CACHE_REL
    assert cache.is_file()

    def fresh_process_collect() -> str:
        dvc._cache.clear()
        dvc._loaded.clear()
        return dvc.collect(tmp_path)[0][0].md5

    doc = json.loads(cache.read_text())
    (entry,) = doc["entries"].values()
    entry["outputs"][0]["md5"] = "c" * 32  # a cached claim for the same stat signature
    cache.write_text(json.dumps(doc))
    assert fresh_process_collect() == "c" * 32  # reused while the file is unchanged
    f.write_text("outs:\n- md5: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n  path: a.csv\n")
    assert fresh_process_collect() == "b" * 32  # any change invalidates it
    cache.write_text("{not json")
    assert fresh_process_collect() == "b" * 32  # a broken cache is ignored


def test_feedback_batches_behind_a_dataset_are_named(in_workspace: Workspace) -> None:
    """A run over a dataset that feedback ingestion appended to names the batches (ML08)."""
    assert P + "feedback.batches" not in _run_tags()
    batches = in_workspace.repo / "data" / "train.csv.batches"
    batches.mkdir()
    for bid in ("b2", "a1"):
        (batches / f"{bid}.intoto.json").write_text("{}")
    tags = _run_tags()
    assert tags[P + "feedback.batches"] == "data/train.csv@a1,data/train.csv@b2"
