"""The few git queries the hooks need, through the ``git`` command (no GitPython import).

Hooks read staged content from the index (``git show :path``) because that is what the commit
will hold; the working tree may differ.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow_guard.core.errors import UsageError

ZERO_SHA = "0" * 40


def shell_args(paths: Sequence[str | os.PathLike[str]]) -> str:
    """Paths quoted for a command a hint tells the user to run (spaces, quotes, ``$``...).

    Put ``--`` before them in the command: a name may start with a dash.
    """
    return " ".join(shlex.quote(os.fspath(p)) for p in paths)


def git(args: Sequence[str], cwd: Path, *, check: bool = True, stdin: bytes | None = None) -> bytes:
    """Run ``git ARGS`` in ``cwd`` and return stdout.

    Raises:
        UsageError: git is missing, or (with ``check``) the command failed.
    """
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False
        )
    except OSError as e:
        raise UsageError(f"cannot run git: {e}", hint="install git and put it on PATH") from e
    if check and proc.returncode != 0:
        raise UsageError(
            f"`git {' '.join(args)}` failed in {cwd}",
            details=[proc.stderr.decode("utf-8", "replace").strip()],
            hint="run dvc-guard inside a git repository",
        )
    return proc.stdout


def repo_root(start: Path | None = None) -> Path:
    """Top folder of the git working tree containing ``start`` (default: cwd).

    Raises:
        UsageError: not inside a git working tree.
    """
    out = git(["rev-parse", "--show-toplevel"], start or Path.cwd())
    return Path(out.decode().strip())


def git_path(root: Path, name: str) -> Path:
    """``git rev-parse --git-path NAME``: honours ``core.hooksPath`` and worktrees."""
    out = git(["rev-parse", "--git-path", name], root).decode().strip()
    p = Path(out)
    return p if p.is_absolute() else root / p


def show(root: Path, spec: str) -> bytes | None:
    """Content of ``REV:path`` (``:path`` = the index), or ``None`` if it does not exist."""
    proc = subprocess.run(
        ["git", "cat-file", "blob", spec], cwd=root, capture_output=True, check=False
    )
    return proc.stdout if proc.returncode == 0 else None


def has_head(root: Path) -> bool:
    """Whether the repository has a commit yet."""
    return git(["rev-parse", "--verify", "-q", "HEAD"], root, check=False).strip() != b""


@dataclass(frozen=True)
class Change:
    """One staged change: status letter (A, M, D, R…), path, and the old path for renames."""

    status: str
    path: str
    old_path: str | None = None


def _parse_name_status(out: bytes) -> list[Change]:
    parts = out.decode("utf-8", "surrogateescape").split("\0")
    changes: list[Change] = []
    i = 0
    while i < len(parts) and parts[i]:
        status = parts[i]
        if status[0] in "RC":
            changes.append(Change(status[0], parts[i + 2], parts[i + 1]))
            i += 3
        else:
            changes.append(Change(status[0], parts[i + 1]))
            i += 2
    return changes


def staged_changes(root: Path) -> list[Change]:
    """Staged changes (``git diff --cached``), deleted files included, renames detected."""
    base = "HEAD" if has_head(root) else git(["hash-object", "-t", "tree", os.devnull], root)
    rev = base if isinstance(base, str) else base.decode().strip()
    out = git(["diff", "--cached", "--name-status", "-z", "-M", rev], root)
    return _parse_name_status(out)


def commit_changes(root: Path, commit: str) -> list[Change]:
    """Files changed by one commit against its first parent (all files for a root commit)."""
    out = git(
        ["diff-tree", "--no-commit-id", "-r", "-z", "-M", "--name-status", "--root", commit],
        root,
    )
    return _parse_name_status(out)


def ls_files(root: Path, rev: str | None = None) -> list[str]:
    """Tracked paths: in the index (``rev=None``) or in the tree of ``rev``."""
    if rev is None:
        out = git(["ls-files", "-z", "--cached"], root)
    else:
        out = git(["ls-tree", "-r", "-z", "--name-only", rev], root)
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def rev_list(root: Path, local_sha: str, remote_sha: str) -> list[str]:
    """Commits a push of ``local_sha`` sends when the remote has ``remote_sha``."""
    if remote_sha != ZERO_SHA:
        proc = subprocess.run(
            ["git", "rev-list", local_sha, f"^{remote_sha}"],
            cwd=root,
            capture_output=True,
            check=False,
        )
        if proc.returncode == 0:
            return proc.stdout.decode().split()
    # New branch, or a remote commit we do not have: everything not on any remote.
    out = git(["rev-list", local_sha, "--not", "--remotes"], root)
    return out.decode().split()
