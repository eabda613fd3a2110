"""``dvc-guard verify``: signatures and sha256 of DVC-tracked data (the blocking hook)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from dvc_hooks import checks, dvcfiles, gitutil, prefetch, workspace
from dvc_hooks.cli import _args
from mlflow_guard.cli import _common
from mlflow_guard.core.errors import GuardError

NAME = "verify"
HELP = "verify dataset signatures and workspace data by sha256 (exit 1 on any mismatch)"


def register(p: argparse.ArgumentParser) -> None:
    """Add the ``verify`` options."""
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="*.dvc / dvc.lock files (default: all tracked)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--staged",
        action="store_true",
        help="pre-commit mode: read DVC files and sidecars from the git index; "
        "also check staged deletions",
    )
    mode.add_argument(
        "--pre-push",
        action="store_true",
        help="pre-push mode: refs on stdin (or $PRE_COMMIT_FROM_REF/TO_REF); full rehash",
    )
    p.add_argument(
        "--cache",
        action="store_true",
        default=os.environ.get(checks.CACHE_ENV, "") in ("1", "true", "yes"),
        help=f"reuse digests of unchanged files (developer side; also ${checks.CACHE_ENV}=1)",
    )
    p.add_argument("--no-cache", dest="cache", action="store_false", help="always rehash")
    p.add_argument("--no-data", action="store_true", help="check signatures only")
    p.add_argument("--workers", type=int, metavar="N", help="hashing threads (default: CPUs)")
    _args.add_repo(p)
    _common.add_json(p)
    p.set_defaults(func=_run)


def _push_refs() -> list[tuple[str, str]]:
    frm, to = os.environ.get("PRE_COMMIT_FROM_REF"), os.environ.get("PRE_COMMIT_TO_REF")
    if frm and to:
        return [(to, frm)]
    return checks.parse_push_refs("" if sys.stdin.isatty() else sys.stdin.read())


def _prefetch(
    root: Path, files: list[str], read: workspace.Reader, workers: int | None
) -> prefetch.Prefetch | None:
    """Start hashing the outputs of ``files`` in a child (see :mod:`dvc_hooks.prefetch`).

    An optimisation only: any error here is left for the verification itself to report.
    """
    if not prefetch.enabled():
        return None
    outs = []
    for f in files:
        try:
            data = read(f)
            outs.extend(dvcfiles.parse(f, data) if data is not None else [])
        except Exception:  # noqa: S112 - whatever it is, the verification reports it
            continue
    return prefetch.Prefetch.start(root, outs, workers=workers)


def _prefetch_head(
    root: Path, refs: list[tuple[str, str]], workers: int | None
) -> prefetch.Prefetch | None:
    """Pre-push: prefetch HEAD's outputs if HEAD is pushed (then they are rehashed in full)."""
    if not prefetch.enabled():
        return None
    try:
        head = gitutil.git(["rev-parse", "HEAD"], root).decode().strip()
        if not any(local == head for local, _ in refs):
            return None
        files = checks.tracked_dvc_files(root, "HEAD")
    except Exception:  # the verification reports it
        return None
    return _prefetch(root, files, checks.commit_reader(root, "HEAD"), workers)


def _run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    root = _args.repo(args)
    ahead: prefetch.Prefetch | None = None
    try:
        # The cold data check starts hashing in a child before the policy and the signature
        # code are imported; listing errors are raised after the policy's, as before.
        early: GuardError | None = None
        files: list[str] = []
        cold = not args.no_data and not args.cache
        try:
            if args.pre_push:
                refs = _push_refs()
                if cold:
                    ahead = _prefetch_head(root, refs, args.workers)
            else:
                read = (
                    checks.index_reader(root) if args.staged else workspace.workspace_reader(root)
                )
                if args.paths:
                    files = _args.dvc_paths(root, args.paths)
                elif args.staged:
                    files = checks.tracked_dvc_files(root)
                else:  # the working tree: new, not yet added DVC files count too
                    files = checks.workspace_dvc_files(root)
                if cold:
                    ahead = _prefetch(root, files, read, args.workers)
        except GuardError as e:
            early = e
        policy, trust = checks.load(root, args.policy)
        if early is not None:
            raise early
        if args.pre_push:
            rep = checks.verify_push(
                root, refs, policy, trust, workers=args.workers, prefetch=ahead
            )
        else:
            cache = checks.open_cache(root, args.cache)
            rep = checks.Report()
            if args.staged:
                checks.staged_deletions(root, rep)
            if not args.paths:
                checks.orphan_sidecars(root, files, rep)
            checks.verify_files(
                root,
                files,
                policy,
                trust,
                read=read,
                check_data=not args.no_data,
                cache=cache,
                workers=args.workers,
                report=rep,
                prefetch=ahead,
            )
            if cache is not None:
                cache.save()
    finally:
        if ahead is not None:
            ahead.close()
    secs = time.perf_counter() - t0
    if not args.json:
        for note in rep.notes:
            print(f"note: {note}")
    rep.raise_if_failed()
    nfiles = sum(v.files for v in rep.ok)
    nbytes = sum(v.bytes for v in rep.ok)
    if args.json:
        _common.print_json(
            {
                "ok": True,
                "verified": [
                    {"dvc_file": v.dvc_file, "signer": v.key.name, "files": v.files} for v in rep.ok
                ],
                "notes": rep.notes,
                "files": nfiles,
                "bytes": nbytes,
                "seconds": round(secs, 3),
                "hash_seconds": round(sum(v.hash_seconds for v in rep.ok), 3),
                "prefetched_outputs": sum(v.prefetched for v in rep.ok),
            }
        )
    else:
        signers = sorted({v.key.name for v in rep.ok})
        print(
            f"dvc-guard: {len(rep.ok)} DVC file(s) verified"
            + (f" ({nfiles} files, {_common.human_bytes(nbytes)})" if not args.no_data else "")
            + (f", signed by {', '.join(signers)}" if signers else "")
            + f" in {secs:.2f}s"
        )
    return 0
