"""Git lineage: commit, branch, remote URL (credentials stripped), dirty flag, diff digest.

Uses GitPython (imported lazily; a hook or a plain ``import mlflow`` must not pay for it). Two
``git`` subprocesses at most: ``git status --porcelain`` for the dirty flag and the list of
changed/untracked files, and ``git diff HEAD --binary`` for the digest of uncommitted changes
(only when dirty).
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


def _untracked_digest(h: hashlib._Hash, root: Path, names: list[str], limit: int) -> None:
    budget = limit
    for name in sorted(names):
        h.update(b"\0untracked\0" + name.encode("utf-8", "surrogateescape") + b"\0")
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
        status = repo.git.status("--porcelain=v1", "-z", "--untracked-files=all")
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
        dirty = bool(changed)
        diff_sha = ""
        if dirty:
            h = hashlib.sha256()
            if commit:
                h.update(repo.git.diff("HEAD", "--binary", stdout_as_string=False))
            _untracked_digest(h, root, untracked, untracked_limit)
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
