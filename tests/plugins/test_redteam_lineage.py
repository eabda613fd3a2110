"""Red team: provenance whose lineage lies, and secrets leaking into lineage.

Real git and DVC repositories in temporary folders, real ``dvc-guard sign`` sidecars; the
provenance is built by the same code the log-time hook runs (``attest.provenance_input``) and
judged by the function the registration gate uses (``provenance.unmet_requirements``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlflow_guard.core import keys, provenance
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore
from mlflow_guard.lineage import dvc, snapshot
from mlflow_guard.lineage import git as git_lineage
from mlflow_guard.plugins import attest
from tests.conftest import KeyRing
from tests.plugins.conftest import BIN, git, run


def _attestation(repo: Path) -> provenance.Attestation:
    dvc._cache.clear()
    dvc._loaded.clear()
    snap = snapshot.collect(repo)
    inp = attest.provenance_input("m", "0" * 64, snap, provenance.RunInfo(run_id="r"))
    return provenance.Attestation(provenance.build_statement(inp), None)


@pytest.fixture
def stale_sidecar_repo(tmp_path: Path, keyring: KeyRing) -> Path:
    """A committed, clean repo whose dataset was changed after it was signed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    run([str(BIN / "dvc"), "init", "-q"], repo)
    data = repo / "train.csv"
    data.write_text("x,label\n1,0\n2,1\n")
    run([str(BIN / "dvc"), "add", "-q", "train.csv"], repo)
    run([str(BIN / "dvc-guard"), "sign", "--key", str(keyring["dataset"].private)], repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "signed v1")
    return repo


def test_signed_dataset_is_signed(stale_sidecar_repo: Path) -> None:
    att = _attestation(stale_sidecar_repo)
    assert provenance.unmet_requirements(att, ["datasets_signed"]) == []


def test_sidecar_of_another_version_does_not_make_the_dataset_signed(
    stale_sidecar_repo: Path,
) -> None:
    repo = stale_sidecar_repo
    signed_sidecar = (repo / "train.csv.dvc.sig").read_bytes()
    (repo / "train.csv").write_text("x,label\n1,1\n2,1\n3,1\n")  # poisoned v2
    run([str(BIN / "dvc"), "add", "-q", "train.csv"], repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v2, not re-signed")
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "train.csv.dvc.sig").read_bytes() == signed_sidecar  # nothing re-signed

    att = _attestation(repo)
    (dep,) = att.dependencies("dataset")
    assert "sha256" not in dep["digest"], dep
    assert not dep["annotations"].get("signed"), dep
    unmet = provenance.unmet_requirements(att, ["datasets_signed"])
    assert unmet == [
        "datasets_signed: unsigned datasets: train.csv; sign them with `dvc-guard sign`"
    ]


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("https://host.example/org/repo.git?access_token=SECRET1", "SECRET1"),
        ("https://host.example/org/repo.git?private_token=SECRET2#frag", "SECRET2"),
        ("https://oauth2:SECRET3@host.example/org/repo.git?x=1", "SECRET3"),
        ("ssh://user:SECRET4@host.example:2222/org/repo.git", "SECRET4"),
        ("https://SECRET5@host.example/org/repo.git", "SECRET5"),
    ],
)
def test_remote_url_secrets_never_reach_lineage(tmp_path: Path, url: str, secret: str) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", url)
    info = git_lineage.collect(repo)
    assert info is not None
    assert secret not in info.remote_url
    assert "host.example" in info.remote_url
    assert secret not in json.dumps(snapshot.collect(repo).tags())


def test_ipv6_remote_keeps_its_brackets() -> None:
    assert (
        git_lineage.strip_credentials("https://u:p@[::1]:8443/x.git") == "https://[::1]:8443/x.git"
    )


@pytest.fixture
def committed_repo(tmp_path: Path) -> Path:
    """A clean repository with one tracked script and a submodule."""
    sub = tmp_path / "libsrc"
    sub.mkdir()
    git(sub, "init", "-q", "-b", "main")
    git(sub, "config", "user.email", "t@example.com")
    git(sub, "config", "user.name", "t")
    (sub / "lib.py").write_text("K = 1\n")
    git(sub, "add", "-A")
    git(sub, "commit", "-q", "-m", "lib")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "train.py").write_text("print('train')\n")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "lib")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def _git_clean_unmet(repo: Path) -> list[str]:
    return provenance.unmet_requirements(_attestation(repo), ["git_clean"])


def test_clean_repo_is_clean(committed_repo: Path) -> None:
    assert _git_clean_unmet(committed_repo) == []


@pytest.mark.parametrize("flag", ["--assume-unchanged", "--skip-worktree"])
def test_edit_hidden_by_an_index_flag_is_dirty(committed_repo: Path, flag: str) -> None:
    repo = committed_repo
    git(repo, "update-index", flag, "train.py")
    (repo / "train.py").write_text("print('poisoned')\n")
    assert git(repo, "status", "--porcelain") == ""  # what plain git status shows
    info = git_lineage.collect(repo)
    assert info is not None
    assert info.dirty
    assert "train.py" in info.changed
    assert info.diff_sha256
    assert _git_clean_unmet(repo)[0].startswith("git_clean: the run started from a working tree")


def test_sparse_checkout_files_absent_from_the_tree_are_not_dirt(committed_repo: Path) -> None:
    repo = committed_repo
    git(repo, "update-index", "--skip-worktree", "train.py")
    (repo / "train.py").unlink()
    assert git(repo, "status", "--porcelain") == ""
    info = git_lineage.collect(repo)
    assert info is not None
    assert not info.dirty


def test_submodule_edit_hidden_by_ignore_config_is_dirty(committed_repo: Path) -> None:
    repo = committed_repo
    git(repo, "config", "submodule.lib.ignore", "all")
    (repo / "lib" / "lib.py").write_text("K = 2  # poisoned\n")
    assert git(repo, "status", "--porcelain") == ""
    info = git_lineage.collect(repo)
    assert info is not None
    assert info.dirty
    assert "lib" in info.changed
    assert _git_clean_unmet(repo) != []


_BASE_KEY = keys.generate()
_BASE_TRUST = TrustStore([TrustedKey("base", _BASE_KEY.public_key(), frozenset({Purpose.MODEL}))])


def _claimed(kind: str, digest: dict[str, str]) -> provenance.Attestation:
    """A statement whose dependency claims to be signed but carries ``digest``."""
    inp = provenance.ProvenanceInput(
        model_name="m",
        root_digest="0" * 64,
        datasets=(provenance.Dataset(path="d.csv", sha256="a" * 64, signature="d.csv.dvc.sig"),),
        base_models=(
            provenance.BaseModelRef(
                uri="models:/b/1",
                root_digest="b" * 64,
                signer_key_id=keys.key_id(_BASE_KEY.public_key()),
            ),
        ),
    )
    att = provenance.Attestation(provenance.build_statement(inp), None)
    for dep in att.dependencies(kind):
        dep["digest"] = digest
    return att


@pytest.mark.parametrize(
    "digest",
    [{"md5": "a" * 32}, {"sha256": "A" * 64}, {"sha256": "a" * 63}, {"sha512": "a" * 128}],
    ids=str,
)
def test_signed_dataset_claim_without_a_sha256_digest_is_unmet(digest: dict[str, str]) -> None:
    assert (
        provenance.unmet_requirements(
            _claimed("dataset", {"sha256": "a" * 64}), ["datasets_signed"]
        )
        == []
    )
    unmet = provenance.unmet_requirements(_claimed("dataset", digest), ["datasets_signed"])
    assert unmet == ["datasets_signed: unsigned datasets: d.csv; sign them with `dvc-guard sign`"]


@pytest.mark.parametrize("digest", [{"md5": "b" * 32}, {"sha256": "xyz"}], ids=str)
def test_base_model_without_a_sha256_digest_is_unmet(digest: dict[str, str]) -> None:
    ok = _claimed("base_model", {"sha256": "b" * 64})
    assert provenance.unmet_requirements(ok, ["base_model_signed"], _BASE_TRUST) == []
    unmet = provenance.unmet_requirements(
        _claimed("base_model", digest), ["base_model_signed"], _BASE_TRUST
    )
    assert unmet == [
        "base_model_signed: base model models:/b/1: its digest is not a sha256 digest "
        "(64 lower-case hex); load it with mlflow_guard.load_model"
    ]
