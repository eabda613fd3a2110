"""Prepare a saved model directory before upload: provenance attestation and OMS signature.

One hashing pass over the model files gives both the provenance subject (root digest without
``model.sig`` and the provenance file) and the OMS manifest (the same digests plus the small
provenance file), so signing costs about one sha256 pass over the model bytes.
No MLflow import here: :mod:`mlflow_guard.plugins.logtime` supplies the run information.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mlflow_guard.core import hashing, keys, oms, provenance
from mlflow_guard.lineage.base_models import recorded
from mlflow_guard.lineage.snapshot import Snapshot


@dataclass(frozen=True)
class Prepared:
    """What was written into the model directory.

    Attributes:
        subject_digest: provenance subject (root digest without signature and provenance).
        root_digest: OMS root digest (empty when unsigned).
        signed: whether ``model.sig`` was written.
        key_id: signer key id (empty when unsigned).
        files: files hashed.
        bytes: bytes hashed.
    """

    subject_digest: str
    root_digest: str
    signed: bool
    key_id: str
    files: int
    bytes: int


def _serialization() -> hashing.Serialization:
    return hashing.Serialization(
        method="files",
        hash_type="sha256",
        ignore_paths=hashing.normalize_ignore_paths([*hashing.GIT_PATHS, oms.SIGNATURE_FILE]),
    )


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def provenance_input(
    model_name: str,
    subject: str,
    snapshot: Snapshot | None,
    run: provenance.RunInfo,
    entry_point: str = "",
) -> provenance.ProvenanceInput:
    """Translate a lineage snapshot and run information into the provenance input."""
    src = provenance.Source(entry_point=entry_point)
    datasets: tuple[provenance.Dataset, ...] = ()
    env_sha, env = "", {}
    problems: tuple[str, ...] = ("no lineage snapshot",)
    if snapshot is not None:
        problems = snapshot.problems
        g = snapshot.git
        if g is not None:
            src = provenance.Source(
                repository=g.remote_url or g.root,
                commit=g.commit,
                branch=g.branch,
                dirty=g.dirty,
                diff_sha256=g.diff_sha256,
                entry_point=entry_point,
            )
        datasets = tuple(
            provenance.Dataset(
                path=d.path,
                md5=d.md5,
                hash_kind=d.hash_kind,
                sha256=d.sha256,
                file_sha256=d.file_sha256,
                signature=d.signature,
            )
            for d in snapshot.datasets
        )
        if snapshot.environment is not None:
            e = snapshot.environment
            env_sha = e.sha256
            env = {"python": e.python, "platform": e.platform, "distributions": e.distributions}
    return provenance.ProvenanceInput(
        model_name=model_name,
        root_digest=subject,
        source=src,
        run=run,
        datasets=datasets,
        base_models=recorded(),
        environment_sha256=env_sha,
        environment={k: list(v) if isinstance(v, tuple) else v for k, v in env.items()},
        problems=problems,
    )


def prepare(
    model_dir: Path,
    *,
    model_name: str,
    snapshot: Snapshot | None,
    run: provenance.RunInfo,
    signer: keys.Signer | None,
    entry_point: str = "",
    workers: int | None = None,
) -> Prepared:
    """Write ``guard.provenance.json`` (signed when ``signer``) and ``model.sig`` (when signer).

    Raises:
        UnsafePath: a symlink or special file in the model directory.
    """
    ser = _serialization()
    ignore = [*ser.ignore_paths, provenance.PROVENANCE_FILE]
    files = hashing.list_files(model_dir, ignore)
    resources = hashing.hash_entries(files, ser, workers=workers)
    subject = hashing.root_digest(resources.values())
    if run.finished_on is None:
        run = provenance.RunInfo(**{**run.__dict__, "finished_on": datetime.now().astimezone()})
    statement = provenance.build_statement(
        provenance_input(model_name, subject, snapshot, run, entry_point)
    )
    prov_path = model_dir / provenance.PROVENANCE_FILE
    body = provenance.sign(statement, signer) if signer else provenance.unsigned(statement)
    _write_atomic(prov_path, body)
    size = sum(f.size for f in files)
    if signer is None:
        return Prepared(subject, "", False, "", len(files), size)
    resources[provenance.PROVENANCE_FILE] = hashing.hash_file(prov_path)
    order = sorted(resources, key=lambda k: hashing.resource_sort_key(k, "files"))
    ordered = {k: resources[k] for k in order}
    bundle = oms.build_bundle(ordered, ser, model_name, signer)
    _write_atomic(model_dir / oms.SIGNATURE_FILE, json.dumps(bundle, indent=2).encode())
    return Prepared(
        subject,
        hashing.root_digest(ordered.values()),
        True,
        signer.key_id,
        len(files) + 1,
        size + len(body),
    )
