"""Where the versions of a dataset that validation compares come from.

The version being committed (the git index, or the DVC cache object its staged ``.dvc``/
``dvc.lock`` names), the previous commit's (``HEAD``) and a rule's baseline revision: a
git-tracked file is read from git, a DVC output from the DVC cache by the md5 its DVC file
records in that tree, and the cache object must hash to that md5 (a swapped object is refused).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dvc_hooks import checks, dvcfiles, gitutil
from mlflow_guard.core.errors import VerificationError
from mlflow_guard.core.policy import ValidationRule


def bytes_at(root: Path, path: str, rev: str) -> tuple[bytes | None, str]:
    """The content of ``path`` in ``rev`` (``HEAD``, or ``""`` for the git index).

    A git-tracked file is read from git; a DVC output from the DVC cache by the md5 its
    ``.dvc``/``dvc.lock`` records in that tree.

    Raises:
        VerificationError: the tree tracks the path through DVC but the cache lacks the object.
    """
    label = f"{rev}:" if rev else "the index (:)"
    blob = gitutil.show(root, f"{rev}:{path}")
    if blob is not None:
        return blob, f"git {rev or 'index'}"
    out = checks.covering_dvc_file(root, path, checks.commit_reader(root, rev))
    if out is None:
        return None, f"not tracked in {label}"
    md5 = out.md5
    where = f"{rev}:{out.dvc_file}"
    if out.is_dir:
        listing = dvcfiles.dir_listing(root, out)
        rel = path.removeprefix(out.path + "/")
        if listing is not None and rel not in listing:
            return None, f"not in {where}"
        md5 = listing[rel] if listing is not None else md5
    obj = None if md5.endswith(".dir") else dvcfiles.cache_object(root, md5)
    if obj is None:
        raise VerificationError(
            f"{path}: the version recorded in {where} (md5 {md5}) is not in the DVC cache",
            hint="run `dvc fetch` for a committed version, or `dvc add`/`dvc commit` for a "
            "staged one, so that exact version can be validated",
        )
    data = obj.read_bytes()
    if md5 not in (_md5(data), _md5(data.replace(b"\r\n", b"\n"))):  # md5-dos2unix
        raise VerificationError(
            f"{path}: the DVC cache object for md5 {md5} ({where}) holds other bytes",
            details=[f"cache object: {obj}"],
            hint="the DVC cache was tampered with; remove that object and run `dvc pull` "
            "or `dvc add` again",
        )
    return data, f"DVC cache ({where})"


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def previous_bytes(root: Path, path: str) -> tuple[bytes | None, str]:
    """The committed (HEAD) content of ``path``, and where it came from.

    Raises:
        VerificationError: HEAD tracks the path through DVC but the cache lacks the object.
    """
    if not gitutil.has_head(root):
        return None, "no previous commit"
    return bytes_at(root, path, "HEAD")


def staged_bytes(root: Path, path: str) -> bytes | None:
    """The content of ``path`` the commit being made records (git index, or the DVC cache
    object its staged ``.dvc``/``dvc.lock`` names), not the working tree, which may differ.

    Raises:
        VerificationError: the staged DVC record names an object the cache lacks.
    """
    return bytes_at(root, path, "")[0]


def baseline_bytes(root: Path, rule: ValidationRule) -> tuple[bytes, str]:
    """The dataset as the rule's baseline revision holds it, and where it came from.

    Raises:
        VerificationError: the revision does not resolve, or does not hold the file (fail
            closed: a baseline that cannot be read must not silently skip the limits).
    """
    assert rule.baseline is not None
    ref = rule.baseline.ref
    commit = gitutil.git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"],
        root,
        check=False,
    ).strip()
    if not commit:
        raise VerificationError(
            f"{rule.path}: baseline {ref!r} is not a revision of this repository",
            hint="fetch the tag or branch (`git fetch --tags`), or fix datasets.validate"
            "[].baseline.ref in guard.yaml",
        )
    data, where = bytes_at(root, rule.path, commit.decode())
    if data is None:
        raise VerificationError(
            f"{rule.path}: baseline {ref!r} does not hold this file ({where})",
            hint="point baseline.ref at a revision that holds the reviewed dataset",
        )
    return data, where.replace(commit.decode(), ref)
