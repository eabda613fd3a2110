"""Git lineage: commit, branch, remote URL (credentials stripped), dirty flag, diff digest.

Uses GitPython (imported lazily; a hook or a plain ``import mlflow`` must not pay for it). Three
``git`` subprocesses at most: ``git status --porcelain`` (submodule ignore rules and fsmonitor
overridden: the repository config must not hide dirt) for the dirty flag and the list of
changed/untracked files, ``git ls-files -v`` for files flagged assume-unchanged or
skip-worktree (their edits are invisible to ``status``; present ones count as changed), and
``git diff HEAD --binary`` for the digest of uncommitted changes (only when dirty).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

_SCP_LIKE = re.compile(r"^(?P<user>[^@/]+)@(?P<host>[^:/]+):(?P<path>.*)$")


@dataclass(frozen=True)
class GitInfo:
    """What git says about the working tree a run starts in.

    Attributes:
        root: absolute path of the working tree.
        commit: ``HEAD`` commit id (40 hex), empty for a repository without commits.
        branch: current branch, empty when detached.
        remote_url: URL of ``origin`` (or the first remote) without credentials.
        dirty: uncommitted changes or untracked files exist.
        diff_sha256: sha256 over ``git diff HEAD --binary`` plus the untracked files' names and
            contents; empty when clean.
        changed: paths reported by ``git status`` (at most 50).
    """

    root: str
    commit: str
    branch: str
    remote_url: str
    dirty: bool
    diff_sha256: str
    changed: tuple[str, ...]


def strip_credentials(url: str) -> str:
    """Remove ``user:password@`` (or a token), the query and the fragment from a remote URL.

    Query strings carry tokens too (``?access_token=…``, ``?private_token=…``) and a git remote
    needs neither query nor fragment to be identified. Scp-like ``git@host:path`` keeps only
    ``host:path``; IPv6 hosts keep their brackets.
    """
    if not url:
        return ""
    m = _SCP_LIKE.match(url)
    if m and "://" not in url:
        return f"{m.group('host')}:{m.group('path')}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme and not parts.netloc:
        return parts.path
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _flagged_present(ls_files_v: str, root: Path) -> list[str]:
    """Tracked files present in the tree whose edits ``git status`` cannot see.

    ``git update-index --assume-unchanged`` (lower-case tag in ``git ls-files -v``) and
    ``--skip-worktree`` (tag ``S``) make git skip a file: an edit to it leaves ``status`` and
    ``diff`` empty. Such a file present in the working tree counts as changed (a sparse
    checkout's skip-worktree files are absent, so they do not).
    """
    out = []
    for e in ls_files_v.split("\0"):
        if len(e) > 2 and (e[0] == "S" or e[0].islower()):
            name = e[2:]
            if os.path.lexists(root / name):
                out.append(name)
    return out


def _untracked_digest(
    h: hashlib._Hash, root: Path, names: list[str], limit: int, label: bytes = b"untracked"
) -> None:
    budget = limit
    for name in sorted(names):
        h.update(b"\0" + label + b"\0" + name.encode("utf-8", "surrogateescape") + b"\0")
        p = root / name
        try:
            st = p.lstat()
            if not p.is_file() or p.is_symlink():
                continue
            if st.st_size > budget:
                h.update(b"size:%d" % st.st_size)
                continue
            budget -= st.st_size
            h.update(p.read_bytes())
        except OSError:
            h.update(b"unreadable")


def collect(
    start: str | os.PathLike[str] | None = None, *, untracked_limit: int = 16 << 20
) -> GitInfo | None:
    """Git information for the repository containing ``start`` (default: cwd).

    Returns ``None`` when ``start`` is not inside a git working tree.

    Raises:
        Exception: whatever GitPython raises for a broken repository; callers record it.
    """
    import git

    try:
        repo = git.Repo(start or os.getcwd(), search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    try:
        if repo.bare or repo.working_tree_dir is None:
            return None
        root = Path(repo.working_tree_dir)
        try:
            commit = repo.head.commit.hexsha
        except ValueError:
            commit = ""
        branch = "" if repo.head.is_detached else repo.active_branch.name
        remote_url = ""
        remotes = {r.name: r for r in repo.remotes}
        remote = remotes.get("origin") or next(iter(remotes.values()), None)
        if remote is not None:
            # read from the config (``Remote.urls`` would start another git process)
            url = remote.config_reader.get_value("url", "")
            remote_url = strip_credentials(str(url))
        # the config can hide dirt from `git status`: submodule ignore rules, an fsmonitor hook
        status = repo.git.execute(
            [
                "git",
                "-c",
                "core.fsmonitor=false",
                "status",
                "--porcelain=v1",
                "-z",
                "--untracked-files=all",
                "--ignore-submodules=none",
            ]
        )
        entries = [e for e in status.split("\0") if e]
        changed: list[str] = []
        untracked: list[str] = []
        skip_next = False
        for e in entries:
            if skip_next:
                skip_next = False
                continue
            code, name = e[:2], e[3:]
            if code.startswith("R") or code.startswith("C"):
                skip_next = True
            changed.append(name)
            if code == "??":
                untracked.append(name)
        hidden = _flagged_present(repo.git.ls_files("-v", "-z"), root)
        changed.extend(n for n in hidden if n not in changed)
        dirty = bool(changed)
        diff_sha = ""
        if dirty:
            h = hashlib.sha256()
            if commit:
                h.update(
                    repo.git.diff(
                        "HEAD",
                        "--binary",
                        "--no-ext-diff",
                        "--no-textconv",
                        stdout_as_string=False,
                    )
                )
            _untracked_digest(h, root, untracked, untracked_limit)
            _untracked_digest(h, root, hidden, untracked_limit, label=b"flagged")
            diff_sha = h.hexdigest()
        return GitInfo(
            root=str(root),
            commit=commit,
            branch=branch,
            remote_url=remote_url,
            dirty=dirty,
            diff_sha256=diff_sha,
            changed=tuple(changed[:50]),
        )
    finally:
        repo.close()
