"""Signed dataset manifests: what a DVC output held, by sha256, signed by a ``dataset`` key.

DVC records an md5 per output (a cache lookup key, not a security digest). A dataset manifest
binds that record to the sha256 of every file of the output, so the data a pipeline trains on can
be verified independently of DVC's cache and state database.

Format: an in-toto Statement v1 with predicate type ``https://mlflow-guard.dev/dataset/v1`` in
a DSSE envelope. One subject per output, named by its repository-relative path, whose sha256 is
the digest of the output's file list (RFC 8785 canonical JSON of ``[{path, sha256, size}]``).
The predicate is a :class:`DatasetManifest`::

    {"dvc_file": "data/train.csv.dvc",
     "outputs": [{"path": "data/train.csv", "hash_kind": "md5", "md5": "…", "size": 1234,
                  "nfiles": null, "is_dir": false,
                  "files": [{"path": "", "sha256": "…", "size": 1234}]}],
     "signed_at": "2026-11-28T17:00:00Z"}

For a directory output ``files[].path`` is relative to the output directory; for a single-file
output the one entry has the empty path. This module is pure: no DVC, git or file-system I/O.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlflow_guard.core import dsse, intoto, keys
from mlflow_guard.core.errors import (
    KeyNotTrusted,
    ManifestMismatch,
    SignatureInvalid,
    UnsafePath,
)
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore

PREDICATE_TYPE = "https://mlflow-guard.dev/dataset/v1"
HashKind = Literal["md5", "md5-dos2unix"]


def canonical_json(listing: list[dict[str, str | int]]) -> bytes:
    """RFC 8785 (JCS) bytes of a list of flat objects with string and integer values.

    For this shape — ASCII keys, strings, integers below 2**53 — JCS is exactly sorted keys, no
    whitespace, minimal string escapes and UTF-8, which is what ``json.dumps`` below emits; it
    is ~20× faster than the general ``rfc8785`` encoder on 10,000 entries. A property test checks
    byte equality with the ``rfc8785`` package.
    """
    text = json.dumps(
        listing, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UnsafePath(
            "a file name in the dataset is not valid UTF-8",
            details=[repr(text[max(0, e.start - 40) : e.end + 40])],
            hint="rename the file; dataset manifests name files in UTF-8",
        ) from e


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetFile(_Model):
    """One file of an output: path inside the output ('' for a single file), sha256, size."""

    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class DatasetOutput(_Model):
    """One DVC output: DVC's own record (md5, hash kind, size, nfiles) plus sha256 per file."""

    path: str = Field(min_length=1)
    hash_kind: HashKind
    md5: str = Field(pattern=r"^[0-9a-f]{32}(\.dir)?$")
    size: int | None = None
    nfiles: int | None = None
    is_dir: bool
    files: list[DatasetFile]

    def digest(self) -> str:
        """sha256 of the RFC 8785 canonical JSON of the file list: the subject digest."""
        listing: list[dict[str, str | int]] = [
            {"path": f.path, "sha256": f.sha256, "size": f.size}
            for f in sorted(self.files, key=lambda f: f.path)
        ]
        return hashlib.sha256(canonical_json(listing)).hexdigest()

    def display(self, f: DatasetFile) -> str:
        """Repository-relative path of one of this output's files."""
        return f"{self.path}/{f.path}" if f.path else self.path

    def dvc_record(self) -> tuple[str, str, str]:
        """What binds a manifest to a DVC file: (path, hash kind, md5)."""
        return self.path, self.hash_kind, self.md5


class DatasetManifest(_Model):
    """Predicate of a dataset statement: every output recorded in one ``.dvc`` or ``dvc.lock``."""

    dvc_file: str = Field(min_length=1)
    outputs: list[DatasetOutput]
    signed_at: str | None = None

    def output(self, path: str) -> DatasetOutput | None:
        """The output recorded for ``path``, if any."""
        return next((o for o in self.outputs if o.path == path), None)


def build_statement(manifest: DatasetManifest) -> intoto.Statement:
    """The in-toto statement for a manifest (one subject per output)."""
    if not manifest.outputs:
        raise SignatureInvalid(
            f"{manifest.dvc_file} records no outputs; there is nothing to sign",
            hint="add outputs with `dvc add` or a dvc.yaml stage first",
        )
    subjects = [
        intoto.Subject(name=o.path, digest={"sha256": o.digest()}) for o in manifest.outputs
    ]
    return intoto.Statement(
        subject=subjects,
        predicate_type=PREDICATE_TYPE,
        predicate=manifest.model_dump(mode="json"),
    )


def sign_manifest(manifest: DatasetManifest, signer: keys.Signer) -> dsse.Envelope:
    """Sign a manifest (``signed_at`` filled in with the current UTC time if empty)."""
    if manifest.signed_at is None:
        now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        manifest = manifest.model_copy(update={"signed_at": now})
    return intoto.sign_statement(build_statement(manifest), signer)


def verify_manifest(
    data: bytes | str | dict[str, Any],
    trust: TrustStore,
    signers: list[str],
    *,
    source: str = "dataset signature",
) -> tuple[DatasetManifest, TrustedKey]:
    """Verify a signed manifest: DSSE signature, key trusted for ``dataset``, key in ``signers``.

    Subjects must equal the digests recomputed from the predicate's file lists, so the
    statement cannot name one content and describe another.

    Raises:
        SignatureInvalid: malformed envelope/statement/predicate, or a bad signature.
        KeyNotTrusted: no signer configured, or the key is untrusted, revoked, expired,
            of another purpose or not listed in ``datasets.signers``.
    """
    if not signers:
        raise KeyNotTrusted(
            f"{source}: the policy names no dataset signers, so no signature can count",
            hint="list the policy ids of your dataset keys under datasets.signers in guard.yaml",
        )
    st, key = intoto.verify_attestation(data, trust, Purpose.DATASET, PREDICATE_TYPE, source=source)
    if key.name not in signers:
        raise KeyNotTrusted(
            f"{source}: signed by key {key.name!r}, which is not a dataset signer",
            details=[f"expected one of datasets.signers: {', '.join(signers)}"],
            hint="re-sign with a key listed under datasets.signers, or add it there on purpose",
        )
    try:
        manifest = DatasetManifest.model_validate(st.predicate)
    except ValidationError as e:
        raise SignatureInvalid(
            f"{source}: predicate is not a dataset manifest v1",
            details=[
                f"{'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors()
            ],
        ) from e
    expected = {o.path: o.digest() for o in manifest.outputs}
    actual = {s.name: s.digest.get("sha256", "") for s in st.subject}
    if expected != actual:
        raise SignatureInvalid(
            f"{source}: statement subjects do not match the manifest's outputs",
            details=[f"expected {expected}", f"actual {actual}"],
            hint="the signature was not made by dvc-guard; re-sign with `dvc-guard sign`",
        )
    return manifest, key


def compare_outputs(signed: DatasetOutput, actual: DatasetOutput, *, source: str) -> None:
    """Compare the workspace's files of an output with the signed ones.

    Raises:
        ManifestMismatch: files added, removed or changed (sha256 or size).
    """
    want = {f.path: f for f in signed.files}
    have = {f.path: f for f in actual.files}
    missing = [signed.display(want[p]) for p in want.keys() - have.keys()]
    extra = [actual.display(have[p]) for p in have.keys() - want.keys()]
    changed = [
        signed.display(want[p])
        for p in want.keys() & have.keys()
        if want[p].sha256 != have[p].sha256 or want[p].size != have[p].size
    ]
    if missing or extra or changed:
        raise ManifestMismatch(
            f"{signed.path}: workspace data differs from the signed dataset ({source})",
            missing=missing,
            extra=extra,
            changed=changed,
            hint="restore the signed data (`dvc checkout`), or if the change is intended, "
            "`dvc add` it and re-sign with `dvc-guard sign`",
        )
