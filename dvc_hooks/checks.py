"""Which DVC files a verification covers, and the verification of many at once.

- ``verify`` (default): every DVC file git tracks, read from the working tree.
- ``verify --staged`` (pre-commit): every DVC file in the index, read from the index (what the
  commit will hold), plus deletions from ``git diff --cached`` — pre-commit never passes the
  names of deleted files. Data is checked in the working tree.
- ``verify --pre-push``: for every commit being pushed, each DVC file it changes must carry a
  valid signature *in that commit*; then every output at HEAD is rehashed in full (no cache).

Failures are collected per DVC file and reported together.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dvc_hooks import dvcfiles, gitutil
from mlflow_guard.core import hashing
from mlflow_guard.core.errors import EXIT_VIOLATION, GuardError, VerificationError
from mlflow_guard.core.hashcache import HashCache

if TYPE_CHECKING:  # imported when used: a hook can start hashing before it loads pydantic
    from dvc_hooks import manifests
    from dvc_hooks.prefetch import Prefetch
    from mlflow_guard.core.policy import Policy
    from mlflow_guard.core.trust import TrustStore

CACHE_ENV = "DVC_GUARD_HASH_CACHE"


def load(root: Path, policy_path: str | None) -> tuple[Policy, TrustStore]:
    """The policy (``--policy``, ``$MLFLOW_GUARD_POLICY`` or ``<repo>/guard.yaml``) and trust."""
    if policy_path is None and not os.environ.get("MLFLOW_GUARD_POLICY"):
        policy_path = str(root / "guard.yaml")
    from mlflow_guard.core.policy import load_policy
    from mlflow_guard.core.trust import TrustStore

    policy = load_policy(policy_path)
    return policy, TrustStore.from_policy(policy)


def open_cache(root: Path, enabled: bool) -> HashCache | None:
    """The opt-in digest cache in the git folder (never committed), or ``None``."""
    if not enabled:
        return None
    return HashCache(gitutil.git_path(root, "dvc-guard/hashcache.json"))


def index_reader(root: Path) -> manifests.Reader:
    """Read repository files from the git index."""
    return lambda rel: gitutil.show(root, f":{rel}")


def commit_reader(root: Path, commit: str) -> manifests.Reader:
    """Read repository files from one commit."""
    return lambda rel: gitutil.show(root, f"{commit}:{rel}")


def tracked_dvc_files(root: Path, rev: str | None = None) -> list[str]:
    """DVC files (``*.dvc``, ``dvc.lock``) git tracks, in the index or in ``rev``."""
    return [p for p in gitutil.ls_files(root, rev) if dvcfiles.is_dvc_file(p)]


def workspace_dvc_files(root: Path) -> list[str]:
    """DVC files git tracks plus new ones not ignored: what the working tree holds."""
    out = set(tracked_dvc_files(root))
    extra = gitutil.git(["ls-files", "-z", "--others", "--exclude-standard"], root)
    out |= {p for p in extra.decode("utf-8", "surrogateescape").split("\0") if p}
    return sorted(p for p in out if dvcfiles.is_dvc_file(p))


@dataclass
class Report:
    """Outcome of verifying several DVC files."""

    ok: list[manifests.Verified] = field(default_factory=list)
    failed: dict[str, GuardError] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def raise_if_failed(self) -> None:
        """Raise one error summarising every failure (exit 1 if any is a violation).

        Raises:
            VerificationError: at least one DVC file failed.
        """
        if not self.failed:
            return
        details: list[str] = []
        for name, err in self.failed.items():
            details.append(f"{name}: {err.summary}")
            details.extend(f"  ↳ {d}" for d in err.details)
            if err.hint:
                details.append(f"  ↳ next step: {err.hint}")
        exc = VerificationError(
            f"dataset verification failed for {len(self.failed)} DVC file(s)",
            details=details,
            hint="fix each file above; `dvc-guard status` lists the state of every dataset",
        )
        exc.exit_code = max(
            (e.exit_code for e in self.failed.values() if e.exit_code == EXIT_VIOLATION),
            default=max(e.exit_code for e in self.failed.values()),
        )
        raise exc


def verify_files(
    root: Path,
    files: Iterable[str],
    policy: Policy,
    trust: TrustStore,
    *,
    read: manifests.Reader,
    check_data: bool = True,
    cache: hashing.DigestCache | None = None,
    workers: int | None = None,
    report: Report | None = None,
    prefetch: Prefetch | None = None,
) -> Report:
    """Verify each DVC file, collecting failures instead of stopping at the first.

    ``prefetch`` may hold the workspace digests of some outputs, hashed in advance.
    """
    from dvc_hooks import manifests

    rep = report or Report()
    for f in files:
        try:
            rep.ok.append(
                manifests.verify_dvc_file(
                    root,
                    f,
                    trust,
                    policy.datasets.signers,
                    read=read,
                    check_data=check_data,
                    cache=cache,
                    workers=workers,
                    prefetch=prefetch,
                )
            )
        except GuardError as e:
            rep.failed[f] = e
    return rep


def staged_deletions(root: Path, rep: Report) -> None:
    """Detect removed DVC files and sidecars in the index (pre-commit passes no deleted names)."""
    index = set(gitutil.ls_files(root))
    for ch in gitutil.staged_changes(root):
        removed = ch.old_path if ch.status == "R" else (ch.path if ch.status == "D" else None)
        if removed is None:
            continue
        if dvcfiles.is_dvc_file(removed):
            side = dvcfiles.sidecar_for(removed)
            if side in index:
                rep.failed[removed] = VerificationError(
                    f"deleted output: {removed} is removed but its signature {side} is kept",
                    hint=(
                        "if removing the dataset is intended, "
                        f"`git rm -- {gitutil.shell_args([side])}` too"
                    ),
                )
            else:
                rep.notes.append(f"deleted output: {removed} (and its signature) removed")
        elif removed.endswith(dvcfiles.SIDECAR_SUFFIX):
            owner = removed.removesuffix(dvcfiles.SIDECAR_SUFFIX)
            if dvcfiles.is_dvc_file(owner) and owner in index:
                rep.failed.setdefault(
                    owner,
                    VerificationError(
                        f"signature {removed} is deleted but {owner} is kept",
                        hint=(
                            "restore it (`git restore --staged -- "
                            f"{gitutil.shell_args([removed])}`) or re-sign {owner}"
                        ),
                    ),
                )


def orphan_sidecars(root: Path, files: list[str], rep: Report) -> None:
    """Sidecars whose DVC file is not tracked (a signature for something else)."""
    index = set(gitutil.ls_files(root))
    for p in index:
        if p.endswith(dvcfiles.SIDECAR_SUFFIX):
            owner = p.removesuffix(dvcfiles.SIDECAR_SUFFIX)
            if dvcfiles.is_dvc_file(owner) and owner not in index:
                rep.failed.setdefault(
                    p,
                    VerificationError(
                        f"{p} signs {owner}, which is not tracked",
                        hint=f"remove the stale signature: `git rm -- {gitutil.shell_args([p])}`",
                    ),
                )


def verify_push(
    root: Path,
    refs: list[tuple[str, str]],
    policy: Policy,
    trust: TrustStore,
    *,
    workers: int | None = None,
    prefetch: Prefetch | None = None,
) -> Report:
    """Pre-push: each pushed commit's DVC changes are signed in that commit; data rehashed.

    Args:
        refs: ``(local_sha, remote_sha)`` pairs from the pre-push hook's standard input.
        prefetch: digests of HEAD's outputs hashed in advance, if any.
    """
    rep = Report()
    seen: set[tuple[str, str]] = set()
    head = gitutil.git(["rev-parse", "HEAD"], root).decode().strip()
    rehash_head = False
    for local, remote in refs:
        if local == gitutil.ZERO_SHA:
            continue  # a branch deletion pushes no content
        rehash_head = rehash_head or local == head
        for commit in gitutil.rev_list(root, local, remote):
            for ch in gitutil.commit_changes(root, commit):
                targets = [ch.path]
                if ch.path.endswith(dvcfiles.SIDECAR_SUFFIX):
                    targets = [ch.path.removesuffix(dvcfiles.SIDECAR_SUFFIX)]
                for t in targets:
                    if not dvcfiles.is_dvc_file(t) or (commit, t) in seen:
                        continue
                    seen.add((commit, t))
                    read = commit_reader(root, commit)
                    if read(t) is None:
                        continue  # deleted in this commit
                    sub = verify_files(root, [t], policy, trust, read=read, check_data=False)
                    for name, err in sub.failed.items():
                        rep.failed[f"{name} @ {commit[:10]}"] = err
    if rehash_head:
        verify_files(
            root,
            tracked_dvc_files(root, "HEAD"),
            policy,
            trust,
            read=commit_reader(root, "HEAD"),
            check_data=True,
            cache=None,
            workers=workers,
            report=rep,
            prefetch=prefetch,
        )
    else:
        rep.notes.append("pushed refs are not HEAD: signatures checked, data not rehashed")
    return rep


def parse_push_refs(text: str) -> list[tuple[str, str]]:
    """``<local ref> <local sha> <remote ref> <remote sha>`` lines → (local sha, remote sha)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append((parts[1], parts[3]))
    return out


def covering_dvc_file(root: Path, path: str, read: manifests.Reader) -> dvcfiles.DvcOut | None:
    """The DVC output holding ``path`` in the tree ``read`` sees: the output itself, or a
    directory output containing it; recorded in a ``.dvc`` file or a ``dvc.lock``."""
    cand = [path + ".dvc"]
    d = posixpath.dirname(path)
    while True:
        if d:
            cand.append(d + ".dvc")
        cand.append(posixpath.join(d, "dvc.lock") if d else "dvc.lock")
        if not d:
            break
        d = posixpath.dirname(d)
    for c in cand:
        data = read(c)
        if data is None:
            continue
        for out in dvcfiles.parse(c, data):
            if out.path == path or (out.is_dir and path.startswith(out.path + "/")):
                return out
    return None
