"""Blocking hooks for real: `dvc-guard install`ed git hooks chained with `dvc install`'s, and
the `.pre-commit-hooks.yaml` hooks run by the real pre-commit framework (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dvc_hooks.conftest import BIN, ENV, Keys, guard, init_repo, sh, write_csv

pytestmark = pytest.mark.slow

MAIN = Path(__file__).resolve().parents[2]


def _head(root: Path) -> str:
    return sh(["git", "rev-parse", "HEAD"], root).stdout.strip()


def _change_data(root: Path, n: int) -> None:
    write_csv(root / "data" / "train.csv", [(i, i % 3, i % 2) for i in range(n)])
    sh(["dvc", "add", "-q", "data/train.csv"], root)
    sh(["git", "add", "-A"], root)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, dataset_keys: Keys) -> Path:
    base = tmp_path_factory.mktemp("hooks")
    root = init_repo(base / "r", dataset_keys)
    _change_data(root, 50)
    assert guard(root, "sign", "--key", str(dataset_keys.key("data-ci"))).returncode == 0
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "signed"], root)
    sh(["git", "init", "-q", "--bare", str(base / "remote.git")], base)
    sh(["git", "remote", "add", "origin", str(base / "remote.git")], root)
    sh(["dvc", "remote", "add", "-q", "-d", "store", str(base / "dvc-store")], root)
    sh(["git", "commit", "-q", "-am", "dvc remote"], root)
    return root


def test_git_hooks_chain_with_dvc_install_and_block(
    repo: Path, dataset_keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = repo / ".git" / "hooks"
    sh(["dvc", "install"], repo)
    dvc_pre_commit = (hooks / "pre-commit").read_text()
    dvc_pre_push = (hooks / "pre-push").read_text()
    assert "dvc git-hook pre-commit" in dvc_pre_commit
    proc = guard(repo, "install")
    assert proc.returncode == 0, proc.stderr
    assert (hooks / "pre-commit.legacy").read_text() == dvc_pre_commit
    assert (hooks / "pre-push.legacy").read_text() == dvc_pre_push

    # An unsigned data change: DVC's own hook runs (and never blocks); ours blocks.
    head = _head(repo)
    _change_data(repo, 60)
    proc = sh(["git", "commit", "-m", "unsigned"], repo, check=False)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "up to date" in out  # DVC's legacy hook ran first
    assert "data/train.csv.dvc.sig signs another version of data/train.csv.dvc" in out
    assert _head(repo) == head

    # Signed: the commit goes through, then the push (DVC's pre-push pushes the cache first).
    assert guard(repo, "sign", "--key", str(dataset_keys.key("data-ci"))).returncode == 0
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-q", "-m", "signed change"], repo)
    proc = sh(["git", "push", "-q", "origin", "main"], repo, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    remote = sh(["git", "ls-remote", "origin", "main"], repo).stdout.split()[0]
    assert remote == _head(repo)

    # A commit that skipped the pre-commit hook is still stopped at push time.
    _change_data(repo, 70)
    sh(["git", "commit", "-q", "--no-verify", "-m", "sneaky"], repo)
    proc = sh(["git", "push", "origin", "main"], repo, check=False)
    assert proc.returncode != 0
    assert "signs another version of data/train.csv.dvc" in proc.stderr
    assert sh(["git", "ls-remote", "origin", "main"], repo).stdout.split()[0] == remote
    # The same check as the pre-commit framework's pre-push stage calls it (refs in env vars).
    monkeypatch.setenv("PRE_COMMIT_FROM_REF", remote)
    monkeypatch.setenv("PRE_COMMIT_TO_REF", _head(repo))
    proc = guard(repo, "verify", "--pre-push")
    assert proc.returncode == 1
    assert f"data/train.csv.dvc @ {_head(repo)[:10]}" in proc.stderr
    monkeypatch.setenv("PRE_COMMIT_TO_REF", remote)
    assert guard(repo, "verify", "--pre-push", "--no-data").returncode == 0
    sh(["git", "reset", "-q", "--hard", "HEAD~1"], repo)
    sh(["dvc", "checkout", "-q", "-f"], repo)

    proc = guard(repo, "uninstall")
    assert proc.returncode == 0
    assert (hooks / "pre-commit").read_text() == dvc_pre_commit
    assert (hooks / "pre-push").read_text() == dvc_pre_push
    assert not (hooks / "pre-commit.legacy").exists()


def test_install_honours_core_hooks_path_and_never_overwrites(repo: Path) -> None:
    sh(["git", "config", "core.hooksPath", ".githooks"], repo)
    try:
        custom = repo / ".githooks"
        custom.mkdir(exist_ok=True)
        (custom / "pre-commit").write_text("#!/bin/sh\necho mine\n")
        (custom / "pre-commit.legacy").write_text("#!/bin/sh\necho older\n")
        proc = guard(repo, "install")
        assert proc.returncode == 2
        assert "refusing to overwrite" in proc.stderr
        assert (custom / "pre-commit").read_text() == "#!/bin/sh\necho mine\n"
        (custom / "pre-commit.legacy").unlink()
        assert guard(repo, "install").returncode == 0
        assert "dvc-guard-hook" in (custom / "pre-commit").read_text()
        assert not (repo / ".git" / "hooks" / "pre-commit.legacy").exists()
        assert guard(repo, "uninstall").returncode == 0
        assert (custom / "pre-commit").read_text() == "#!/bin/sh\necho mine\n"
        assert not (custom / "pre-push").exists()
    finally:
        sh(["git", "config", "--unset", "core.hooksPath"], repo)


def test_pre_commit_framework_try_repo_and_config(
    repo: Path, dataset_keys: Keys, tmp_path: Path
) -> None:
    env = {**ENV, "PRE_COMMIT_HOME": str(tmp_path / "pc-home")}
    pre_commit = str(BIN / "pre-commit")
    _change_data(repo, 80)
    proc = sh([pre_commit, "try-repo", str(MAIN), "dvc-guard-verify"], repo, check=False, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "signs another version of data/train.csv.dvc" in proc.stdout
    assert guard(repo, "sign", "--key", str(dataset_keys.key("data-ci"))).returncode == 0
    sh(["git", "add", "-A"], repo)
    proc = sh([pre_commit, "try-repo", str(MAIN), "dvc-guard-verify"], repo, check=False, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # The documented .pre-commit-config.yaml form, installed as the git hook.
    rev = sh(["git", "rev-parse", "HEAD"], MAIN).stdout.strip()
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {MAIN}\n    rev: {rev}\n"
        "    hooks: [{id: dvc-guard-verify}, {id: dvc-guard-validate}]\n"
    )
    sh(["git", "add", ".pre-commit-config.yaml"], repo)
    sh([pre_commit, "install"], repo, env=env)
    sh(["git", "commit", "-q", "-m", "signed via pre-commit"], repo, env=env)
    head = _head(repo)
    _change_data(repo, 90)
    proc = sh(["git", "commit", "-m", "unsigned"], repo, check=False, env=env)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "dvc-guard verify" in out
    assert "Failed" in out
    assert "signs another version of data/train.csv.dvc" in out
    assert _head(repo) == head
    sh([pre_commit, "uninstall"], repo, env=env)
    sh(["git", "reset", "-q", "--hard"], repo)


def test_install_from_a_linked_worktree_uses_the_shared_hooks(repo: Path) -> None:
    wt = repo.parent / "wt"
    # DVC's post-checkout hook (from `dvc install` above) must not run in the new worktree.
    sh(
        ["git", "-c", "core.hooksPath=/nonexistent", "worktree", "add", "-q", str(wt), "-b", "wt"],
        repo,
    )
    try:
        hooks = Path(sh(["git", "rev-parse", "--git-path", "hooks"], wt).stdout.strip())
        hooks = hooks if hooks.is_absolute() else wt / hooks
        proc = guard(wt, "install", "--json")
        assert proc.returncode == 0, proc.stderr
        assert (hooks / "pre-commit").is_file()
        assert "dvc-guard-hook" in (hooks / "pre-commit").read_text()
        assert guard(wt, "uninstall").returncode == 0
        assert (
            not (hooks / "pre-commit").exists()
            or "dvc-guard-hook" not in (hooks / "pre-commit").read_text()
        )
    finally:
        sh(["git", "worktree", "remove", "--force", str(wt)], repo)
