"""Fixtures for the DVC hooks: keys, and real git + DVC repositories in temp folders.

Private keys are generated per session in temp folders; nothing secret is committed. Repos are
built once per module (DVC commands take ~1 s each on this machine) and tests that change one
restore it or work on a copy.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlflow_guard.core import keys

BIN = Path(sys.executable).parent
ENV = {
    **os.environ,
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "DVC_NO_ANALYTICS": "1",
}
_SCRUB = ("MLFLOW_GUARD_POLICY", "DVC_GUARD_HASH_CACHE", "MLFLOW_GUARD_DATASET_KEY")
for _var in _SCRUB:
    ENV.pop(_var, None)


def sh(
    args: list[str],
    cwd: Path,
    *,
    check: bool = True,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with the test environment; fail loudly when ``check`` and it fails."""
    proc = subprocess.run(
        args, cwd=cwd, env=env or ENV, capture_output=True, text=True, input=stdin, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def guard(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``dvc-guard ARGS`` in this process (fast; the CLI has no global state).

    Never raises: tests assert the exit code and the captured output.
    """
    from dvc_hooks.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_stdin = os.getcwd(), sys.stdin
    saved = {v: os.environ.pop(v) for v in _SCRUB if v in os.environ}
    try:
        os.chdir(cwd)
        sys.stdin = io.StringIO(stdin or "")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(args))
    finally:
        os.chdir(old_cwd)
        sys.stdin = old_stdin
        os.environ.update(saved)
    return subprocess.CompletedProcess(list(args), rc, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class Keys:
    """Key files: data-ci (trusted signer), eve (trusted dataset key, not a signer), old
    (revoked), expired, model (wrong purpose)."""

    dir: Path

    def key(self, name: str) -> Path:
        """Private key path."""
        return self.dir / f"{name}.key"


@pytest.fixture(scope="session")
def dataset_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Generate the key pairs once per session."""
    d = tmp_path_factory.mktemp("dvc-keys")
    for name in ("data-ci", "eve", "old", "expired", "model"):
        keys.write_keypair(d, name, keys.generate())
    return Keys(d)


def policy_text(validate: str = "") -> str:
    """guard.yaml for the test repos (public keys under keys/)."""
    return (
        textwrap.dedent("""\
        version: 1
        keys:
          - {id: data-ci, public_key: keys/data-ci.pub, purposes: [dataset]}
          - {id: eve, public_key: keys/eve.pub, purposes: [dataset]}
          - {id: old, public_key: keys/old.pub, purposes: [dataset]}
          - {id: expired, public_key: keys/expired.pub, purposes: [dataset],
             not_after: "2020-01-01T00:00:00Z"}
          - {id: model, public_key: keys/model.pub, purposes: [model]}
        revoked: [old]
        datasets:
          signers: [data-ci, old, expired, model]
        """)
        + validate
    )


def init_repo(path: Path, ks: Keys, *, dvc: bool = True, validate: str = "") -> Path:
    """git init (+ dvc init), public keys and guard.yaml, first commit."""
    path.mkdir(parents=True, exist_ok=True)
    sh(["git", "init", "-q", "-b", "main"], path)
    (path / "keys").mkdir()
    for pub in ks.dir.glob("*.pub"):
        shutil.copy(pub, path / "keys" / pub.name)
    (path / "guard.yaml").write_text(policy_text(validate))
    if dvc:
        sh(["dvc", "init", "-q"], path)
    sh(["git", "add", "-A"], path)
    sh(["git", "commit", "-q", "-m", "init"], path)
    return path


def write_csv(path: Path, rows: list[tuple[object, ...]], header: str = "f1,f2,label") -> None:
    """Write a small CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


def tree_state(root: Path) -> dict[str, bytes]:
    """Every file's bytes (minus .git internals and DVC's tmp): to assert nothing changed."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith((".git/", ".dvc/tmp/")):
            out[rel] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory: pytest.TempPathFactory, dataset_keys: Keys) -> Path:
    """A git+DVC repo: data/train.csv (dvc add), data/images/ (dvc add, a directory) and a
    dvc.yaml stage (dvc repro) writing features.csv; all signed by data-ci and committed."""
    root = init_repo(tmp_path_factory.mktemp("repo") / "r", dataset_keys)
    write_csv(root / "data" / "train.csv", [(i / 10, i % 7, i % 2) for i in range(200)])
    imgs = root / "data" / "images"
    imgs.mkdir()
    for i in range(5):
        (imgs / f"{i}.bin").write_bytes(os.urandom(1000 + i))
    (imgs / "sub").mkdir()
    (imgs / "sub" / "x.bin").write_bytes(b"x" * 100)
    sh(["dvc", "add", "-q", "data/train.csv", "data/images"], root)
    (root / "dvc.yaml").write_text(
        "stages:\n  features:\n    cmd: cp data/train.csv features.csv\n"
        "    deps: [data/train.csv]\n    outs: [features.csv]\n"
    )
    sh(["dvc", "repro", "-q"], root)
    signed = guard(root, "sign", "--key", str(dataset_keys.key("data-ci")))
    assert signed.returncode == 0, signed.stderr
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "signed data"], root)
    return root
