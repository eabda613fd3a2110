"""Build, sign and verify the dataset manifest of one DVC file (``X.dvc`` or ``dvc.lock``).

The signature of ``data/train.csv.dvc`` lives in the git-tracked sidecar
``data/train.csv.dvc.sig`` (DVC rejects extra keys in its own files). It covers every output the
DVC file records: DVC's md5 record and the sha256 of every file. Verification checks, in order:
the sidecar exists; its DSSE signature is by a trusted ``dataset`` key listed in
``datasets.signers``; it is for this DVC file; it records the same outputs and md5s as the DVC
file does now; and the data in the workspace has the signed sha256 digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dvc_hooks import dvcfiles, gitutil, workspace
from dvc_hooks.workspace import Reader as Reader  # re-exported: moved there
from dvc_hooks.workspace import workspace_reader as workspace_reader
from mlflow_guard.core import dataset, hashing, keys
from mlflow_guard.core.errors import (
    GuardError,
    ManifestMismatch,
    PolicyViolation,
    UsageError,
    VerificationError,
)
from mlflow_guard.core.trust import TrustedKey, TrustStore

if TYPE_CHECKING:
    from dvc_hooks.prefetch import Prefetch

_BUF = 4 * 1024 * 1024


def hash_output(
    root: Path,
    out: dvcfiles.DvcOut,
    *,
    cache: hashing.DigestCache | None = None,
    workers: int | None = None,
) -> dataset.DatasetOutput:
    """The workspace's files of ``out`` with their sha256 (the opt-in cache may answer)."""
    digests = workspace.digests(root, out, cache=cache, workers=workers)
    files = [dataset.DatasetFile(path=n, sha256=d, size=s) for n, (d, s) in digests.items()]
    return dataset.DatasetOutput(
        path=out.path,
        hash_kind=out.hash_kind,
        md5=out.md5,
        size=out.size,
        nfiles=out.nfiles,
        is_dir=out.is_dir,
        files=files,
    )


def compare_digests(
    signed: dataset.DatasetOutput, have: dict[str, tuple[str, int]], *, source: str
) -> None:
    """:func:`dataset.compare_outputs` against :func:`workspace.digests` (no model per file).

    Raises:
        ManifestMismatch: files added, removed or changed (sha256 or size), with the same
            message as :func:`dataset.compare_outputs`.
    """
    want = {f.path: f for f in signed.files}

    def show(p: str) -> str:
        return f"{signed.path}/{p}" if p else signed.path

    missing = [show(p) for p in want.keys() - have.keys()]
    extra = [show(p) for p in have.keys() - want.keys()]
    changed = [show(p) for p, f in want.items() if p in have and have[p] != (f.sha256, f.size)]
    if missing or extra or changed:
        raise ManifestMismatch(
            f"{signed.path}: workspace data differs from the signed dataset ({source})",
            missing=missing,
            extra=extra,
            changed=changed,
            hint="restore the signed data (`dvc checkout`), or if the change is intended, "
            "`dvc add` it and re-sign with `dvc-guard sign`",
        )


def _sha256_md5(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_BUF):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def build_for_signing(root: Path, out: dvcfiles.DvcOut) -> dataset.DatasetOutput:
    """Hash an output for signing, checking that the workspace is what DVC recorded.

    For ``hash: md5`` outputs each file's md5 is recomputed in the same pass and compared with
    DVC's record (the ``.dir`` listing for directories), so a signature never vouches for data
    DVC does not hold. Legacy md5-dos2unix records are not recomputed.

    Raises:
        ManifestMismatch: the workspace differs from DVC's record.
        UsageError: a directory's ``.dir`` listing is not in the DVC cache.
    """
    entries = workspace.entries(root, out)
    want: dict[str, str] | None = None
    if out.hash_kind == "md5":
        if out.is_dir:
            want = dvcfiles.dir_listing(root, out)
            if want is None:
                raise UsageError(
                    f"{out.path}: DVC's listing {out.md5} is not in the cache",
                    hint="run `dvc add`/`dvc commit` (or `dvc pull`) before signing",
                )
        else:
            want = {"": out.md5}
    files, changed = [], []
    for e in entries:
        sha, md5 = _sha256_md5(e.path)
        if want is not None and want.get(e.name) != md5:
            changed.append(out.path + ("/" + e.name if e.name else ""))
        files.append(dataset.DatasetFile(path=e.name, sha256=sha, size=e.size))
    if want is not None:
        names = {e.name for e in entries}
        missing = [f"{out.path}/{n}" for n in want.keys() - names]
        extra = [f"{out.path}/{n}" for n in names - want.keys()]
        if missing or extra or changed:
            raise ManifestMismatch(
                f"{out.path}: workspace differs from what DVC recorded in {out.dvc_file}",
                missing=missing,
                extra=extra,
                changed=changed,
                hint="run `dvc add`/`dvc repro`/`dvc commit` first, then sign",
            )
    return dataset.DatasetOutput(
        path=out.path,
        hash_kind=out.hash_kind,
        md5=out.md5,
        size=out.size,
        nfiles=out.nfiles,
        is_dir=out.is_dir,
        files=files,
    )


def sign_dvc_file(root: Path, dvc_file: str, signer: keys.Signer) -> tuple[Path, int, int]:
    """Sign every output of ``dvc_file``; write the sidecar. Returns (sidecar, files, bytes).

    Raises:
        UsageError: the DVC file does not exist.
        DvcFileError / ManifestMismatch: see :func:`dvcfiles.parse`, :func:`build_for_signing`.
    """
    data = workspace_reader(root)(dvc_file)
    if data is None:
        raise UsageError(f"{dvc_file} does not exist", hint="pass a .dvc file or dvc.lock")
    outs = [build_for_signing(root, o) for o in dvcfiles.parse(dvc_file, data)]
    manifest = dataset.DatasetManifest(dvc_file=dvc_file, outputs=outs)
    env = dataset.sign_manifest(manifest, signer)
    sidecar = root / dvcfiles.sidecar_for(dvc_file)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(env.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, sidecar)
    return sidecar, sum(len(o.files) for o in outs), sum(f.size for o in outs for f in o.files)


@dataclass(frozen=True)
class Verified:
    """A DVC file whose signature (and, if checked, data) verified."""

    dvc_file: str
    key: TrustedKey
    outputs: int
    files: int
    bytes: int
    hash_seconds: float = 0.0
    prefetched: int = 0
    """Outputs whose digests came from the prefetch child (:mod:`dvc_hooks.prefetch`)."""


def verify_dvc_file(
    root: Path,
    dvc_file: str,
    trust: TrustStore,
    signers: list[str],
    *,
    read: Reader,
    check_data: bool = True,
    cache: hashing.DigestCache | None = None,
    workers: int | None = None,
    prefetch: Prefetch | None = None,
) -> Verified:
    """Verify one DVC file's sidecar signature and (optionally) its workspace data.

    Args:
        read: where the DVC file and the sidecar are read from (working tree, index, a commit).
        prefetch: workspace digests hashed in advance (:mod:`dvc_hooks.prefetch`), if any.

    Raises:
        PolicyViolation: the DVC file is unsigned (no sidecar).
        SignatureInvalid / KeyNotTrusted: bad, foreign or untrusted signature.
        VerificationError: the signature is for another version of the DVC file.
        ManifestMismatch: the data differs from what was signed.
    """
    data = read(dvc_file)
    if data is None:
        raise UsageError(f"{dvc_file} does not exist", hint="pass a .dvc file or dvc.lock")
    outs = dvcfiles.parse(dvc_file, data)
    side = dvcfiles.sidecar_for(dvc_file)
    sig = read(side)
    if sig is None:
        raise PolicyViolation(
            f"{dvc_file} is not signed: {side} is missing",
            hint=(
                f"sign it with `dvc-guard sign --key KEY -- {gitutil.shell_args([dvc_file])}` "
                f"and `git add -- {gitutil.shell_args([side])}`"
            ),
        )
    try:
        manifest, key = dataset.verify_manifest(sig, trust, signers, source=side)
    except GuardError as e:
        if side not in e.summary:
            e.summary = f"{side}: {e.summary}"
        raise
    if manifest.dvc_file != dvc_file:
        raise VerificationError(
            f"{side} is the signature of another DVC file",
            details=[f"expected dvc_file {dvc_file!r}", f"actual {manifest.dvc_file!r}"],
            hint=(
                f"re-sign with `dvc-guard sign -- {gitutil.shell_args([dvc_file])}`; "
                "never copy sidecars between files"
            ),
        )
    now = {o.path: (o.hash_kind, o.md5, o.size, o.nfiles) for o in outs}
    signed = {o.path: (o.hash_kind, o.md5, o.size, o.nfiles) for o in manifest.outputs}
    if now != signed:
        details = []
        for p in sorted(now.keys() | signed.keys()):
            a, b = signed.get(p), now.get(p)
            if a != b:
                details.append(
                    f"{p}: signed md5 {a[1] if a else '(none)'}, "
                    f"{dvc_file} now records {b[1] if b else '(no such output)'}"
                )
        raise VerificationError(
            f"{side} signs another version of {dvc_file}",
            details=details,
            hint=(
                "if the new data is intended, re-sign: "
                f"`dvc-guard sign -- {gitutil.shell_args([dvc_file])}`"
            ),
        )
    nfiles = nbytes = 0
    hash_secs = 0.0
    prefetched = 0
    if check_data:
        for o in outs:
            ready = prefetch.take(o) if prefetch is not None and cache is None else None
            if ready is not None:
                actual, secs = ready
                hash_secs += secs
                prefetched += 1
            else:
                t0 = time.perf_counter()
                actual = workspace.digests(root, o, cache=cache, workers=workers)
                hash_secs += time.perf_counter() - t0
            signed_out = manifest.output(o.path)
            assert signed_out is not None
            compare_digests(signed_out, actual, source=dvc_file)
            nfiles += len(actual)
            nbytes += sum(size for _, size in actual.values())
    return Verified(dvc_file, key, len(outs), nfiles, nbytes, hash_secs, prefetched)
