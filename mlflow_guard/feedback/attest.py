"""Feedback-batch attestations: which record ids from which source went into a dataset file.

An in-toto Statement v1 (predicate ``https://mlflow-guard.dev/feedback-batch/v1``) in a DSSE
envelope, signed by a key trusted for ``dataset``. Its subject is the dataset file with its
sha256 *after* the batch was appended, so lineage from a training run's dataset digest reaches
back to the batches and their sources.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow_guard.core import intoto, keys
from mlflow_guard.core.errors import KeyNotTrusted, VerificationError
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore
from mlflow_guard.feedback.ingest import BatchResult

PREDICATE_TYPE = "https://mlflow-guard.dev/feedback-batch/v1"


def file_sha256(path: str | os.PathLike[str], size: int | None = None) -> str:
    """Hex sha256 of a file (of its first ``size`` bytes when given), streamed.

    Raises:
        VerificationError: the file is shorter than ``size``.
    """
    h = hashlib.sha256()
    left = size
    with open(path, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(4 * 1024 * 1024 if left is None else min(left, 4 * 1024 * 1024))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    if left:
        raise VerificationError(
            f"{path} is shorter than the {size} bytes the batch committed",
            hint="the dataset was truncated or replaced after the ingest; restore it",
        )
    return h.hexdigest()


def statement(result: BatchResult, dataset: str, digest: str, now: float) -> intoto.Statement:
    """The feedback-batch statement for ``result`` appended to ``dataset`` (digest after)."""
    predicate: dict[str, Any] = {
        "batchId": result.batch_id,
        "ingestedAt": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
        "accepted": len(result.accepted),
        "records": {s: ids for s, ids in sorted(result.by_source().items())},
        "recordDigests": {
            f"{a.record.source}/{a.record.id}": hashlib.sha256(a.raw).hexdigest()
            for a in result.accepted
        },
        "quarantined": [
            {"line": e.line, "qid": e.qid, "reason": e.reason, "sha256": e.sha256}
            for e in result.quarantined
        ],
        "skew": result.skew.to_json() if result.skew else None,
    }
    return intoto.Statement(
        subject=[intoto.Subject(name=dataset, digest={"sha256": digest})],
        predicate_type=PREDICATE_TYPE,
        predicate=predicate,
    )


def dataset_signer(trust: TrustStore, signer: keys.Signer) -> TrustedKey:
    """The policy entry of ``signer``'s key if it is trusted for ``dataset``.

    Raises:
        KeyNotTrusted: the key is not in the policy, or not for ``dataset``, revoked, expired.
    """
    entry = next((e for e in trust.entries if e.key_id == signer.key_id), None)
    if entry is None:
        raise KeyNotTrusted(
            f"the attestation key {signer.key_id[:16]}… is not in the policy",
            hint="sign feedback-batch attestations with a policy key of purpose 'dataset'",
        )
    return trust.check(entry, Purpose.DATASET)


def write(
    result: BatchResult,
    dataset: Path,
    signer: keys.Signer,
    trust: TrustStore,
    out_dir: Path,
    now: float,
    size: int | None = None,
) -> Path:
    """Sign and write the attestation ``out_dir/<batch_id>.intoto.json``; return its path.

    ``size`` is the dataset's committed length right after the batch (the destination's
    ``size_after``): the subject digest then covers exactly the file as this batch left it,
    even when another ingest has appended since the lock was released.

    Raises:
        KeyNotTrusted: see :func:`dataset_signer`.
        VerificationError: the file is now shorter than ``size``.
    """
    dataset_signer(trust, signer)
    st = statement(result, dataset.as_posix(), file_sha256(dataset, size), now)
    env = intoto.sign_statement(st, signer)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result.batch_id}.intoto.json"
    path.write_text(json.dumps(env.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
