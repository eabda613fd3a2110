"""Hostile DVC files, caches and workspaces against ``dvc-guard`` in real git (+ DVC) repos.

Each attack must end in exit 1 (violation) or 2 (malformed input) with a message naming the
file and field, and leave every file as it was.
"""

from __future__ import annotations

import hashlib
import resource
import subprocess
from pathlib import Path

import pytest

from tests.dvc_hooks.conftest import BIN, ENV, Keys, init_repo, sh, tree_state

pytestmark = pytest.mark.slow

MD5 = "f69f5b72bc79a92dc70c63c9aa142e36"


def _cli(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``dvc-guard ARGS`` in a child capped at 2 GiB of address space (a bomb must not take
    the machine down while it is still unfixed)."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [str(BIN / "dvc-guard"), *args],
        cwd=root,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
        check=False,
    )


@pytest.fixture
def git_repo(tmp_path: Path, dataset_keys: Keys) -> Path:
    """A git repository with guard.yaml and keys (DVC files are written by hand)."""
    return init_repo(tmp_path / "r", dataset_keys, dvc=False)


def _laughs(levels: int = 9, width: int = 9) -> tuple[str, str]:
    """YAML anchors nesting ``width ** levels`` strings, and an alias to the top one."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n", f"*l{levels - 1}"


@pytest.mark.parametrize(
    ("name", "body", "fragment"),
    [
        ("a.dvc", "outs: [BOMB]\n", "a.dvc: outs[0]: expected a mapping with a 'path'"),
        ("a.dvc", "outs:\n- {path: a, md5: BOMB}\n", "a.dvc: outs[0] (a): no valid md5"),
        ("a.dvc", f"outs:\n- {{path: a, md5: {MD5}, size: BOMB}}\n", "(a): size [["),
        ("a.dvc", f"outs:\n- {{path: a, md5: {MD5}, hash: BOMB}}\n", "unsupported hash kind"),
        ("dvc.lock", "schema: BOMB\nstages: {}\n", "dvc.lock: unsupported dvc.lock format"),
    ],
)
def test_yaml_alias_bomb_is_refused_quickly(
    git_repo: Path, name: str, body: str, fragment: str
) -> None:
    """Aliases are cheap to load (shared objects) but ``repr``/``str`` of one expands it:
    ~387 million strings here. The error must name the field without expanding the value."""
    anchors, alias = _laughs()
    (git_repo / name).write_text(anchors + body.replace("BOMB", alias))
    sh(["git", "add", name], git_repo)
    before = tree_state(git_repo)
    proc = _cli(git_repo, "verify", "--staged", timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr
    assert len(proc.stderr) < 4000
    assert tree_state(git_repo) == before


def test_duplicate_yaml_key_is_refused_like_dvc_does(git_repo: Path, dataset_keys: Keys) -> None:
    """DVC itself refuses a repeated key; PyYAML kept the last one, so a record DVC rejects
    (and whose first md5 DVC's error names) could still be signed and verified."""
    (git_repo / "t.csv").write_text("a,b\n1,2\n")
    real = hashlib.md5(b"a,b\n1,2\n").hexdigest()
    (git_repo / "t.csv.dvc").write_text(
        f"outs:\n- md5: {MD5}\n  md5: {real}\n  size: 8\n  hash: md5\n  path: t.csv\n"
    )
    sh(["git", "add", "t.csv.dvc"], git_repo)
    before = tree_state(git_repo)
    for args in (["sign", "t.csv.dvc", "--key", str(dataset_keys.key("data-ci"))], ["verify"]):
        proc = _cli(git_repo, *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "t.csv.dvc is not valid YAML" in proc.stderr
        assert "found duplicate key 'md5'" in proc.stderr
        assert "line 3" in proc.stderr
        assert tree_state(git_repo) == before
