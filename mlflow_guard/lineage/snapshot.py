"""A lineage snapshot: git, DVC inputs and environment of a run, as tags and as a document.

Collecting never raises: each part that fails is recorded in ``problems`` and the snapshot's
``status`` says ``partial``. The tags are claims made by the client; the server's gate verifies
what it needs (signatures, digests) itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_guard.lineage import dvc, environment
from mlflow_guard.lineage import git as git_lineage

TAG_PREFIX = "guard.lineage."
MAX_TAG_VALUE = 5000
ARTIFACT_PATH = "guard/lineage.json"


@dataclass(frozen=True)
class Snapshot:
    """Lineage of the working directory at one instant.

    Attributes:
        git: git information, ``None`` outside a working tree.
        dvc_root: DVC repository root, empty outside a DVC repository.
        datasets: DVC outputs.
        environment: the environment fingerprint.
        problems: what could not be collected (never fatal).
        collected_at: UNIX time in seconds.
        elapsed_ms: time spent collecting.
    """

    git: git_lineage.GitInfo | None
    dvc_root: str
    datasets: tuple[dvc.DvcOutput, ...]
    environment: environment.Environment | None
    problems: tuple[str, ...] = ()
    collected_at: float = field(default_factory=time.time)
    elapsed_ms: float = 0.0
    _memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def status(self) -> str:
        """``ok`` or ``partial`` (something could not be collected)."""
        return "partial" if self.problems else "ok"

    def datasets_json(self) -> list[dict[str, Any]]:
        """The DVC outputs as JSON-ready dicts (computed once)."""
        if "datasets" not in self._memo:
            self._memo["datasets"] = [d.to_json() for d in self.datasets]
        out: list[dict[str, Any]] = self._memo["datasets"]
        return out

    @property
    def datasets_sha256(self) -> str:
        """Digest of the canonical JSON list of DVC outputs (computed once)."""
        if "datasets_sha256" not in self._memo:
            self._memo["datasets_sha256"] = _digest(self.datasets_json())
        return str(self._memo["datasets_sha256"])

    def to_json(self) -> dict[str, Any]:
        """The full document (logged as the run artifact ``guard/lineage.json``)."""
        g = self.git
        return {
            "status": self.status,
            "problems": list(self.problems),
            "collected_at": self.collected_at,
            "git": None
            if g is None
            else {
                "commit": g.commit,
                "branch": g.branch,
                "remote_url": g.remote_url,
                "dirty": g.dirty,
                "diff_sha256": g.diff_sha256,
                "changed": list(g.changed),
            },
            "dvc": {
                "root": self.dvc_root,
                "outputs": self.datasets_json(),
                "sha256": self.datasets_sha256,
            },
            "environment": None if self.environment is None else self.environment.to_json(),
        }

    @property
    def sha256(self) -> str:
        """Digest of the document without its collection time (identifies the snapshot)."""
        if "sha256" not in self._memo:
            doc = self.to_json()
            doc.pop("collected_at")
            self._memo["sha256"] = _digest(doc)
        return str(self._memo["sha256"])

    def feedback_batches(self) -> list[str]:
        """Feedback batches behind the DVC outputs: ``PATH@BATCH_ID`` for every
        ``PATH.batches/BATCH_ID.intoto.json`` attestation (written by ``feedback ingest``).

        These name the batches (and through them the sources and record ids); like every
        lineage tag they are claims that the server's gate verifies, not proofs.
        """
        if not self.dvc_root:
            return []
        out: list[str] = []
        for d in self.datasets:
            folder = Path(self.dvc_root) / f"{d.path}.batches"
            if folder.is_dir():
                out += sorted(
                    f"{d.path}@{p.name.removesuffix('.intoto.json')}"
                    for p in folder.glob("*.intoto.json")
                )
        return out

    def tags(self) -> dict[str, str]:
        """Run tags under ``guard.lineage.`` (values short; the full list is an artifact)."""
        t: dict[str, str] = {
            "status": self.status,
            "sha256": self.sha256,
        }
        if self.problems:
            t["problems"] = "; ".join(self.problems)[:MAX_TAG_VALUE]
        g = self.git
        if g is not None:
            t.update(
                {
                    "git.commit": g.commit,
                    "git.branch": g.branch,
                    "git.remote_url": g.remote_url,
                    "git.dirty": "true" if g.dirty else "false",
                }
            )
            if g.diff_sha256:
                t["git.diff_sha256"] = g.diff_sha256
        if self.dvc_root:
            t["dvc.outputs"] = str(len(self.datasets))
            t["dvc.sha256"] = self.datasets_sha256
            compact = json.dumps(
                [
                    {
                        k: v
                        for k, v in d.items()
                        if k in ("path", "md5", "hash_kind", "sha256", "file_sha256")
                    }
                    for d in self.datasets_json()
                ],
                separators=(",", ":"),
            )
            if len(compact) <= MAX_TAG_VALUE:
                t["dvc.datasets"] = compact
            batches = self.feedback_batches()
            if batches:
                t["feedback.batches"] = ",".join(batches)[:MAX_TAG_VALUE]
        if self.environment is not None:
            t["env.sha256"] = self.environment.sha256
            t["env.python"] = self.environment.python
            t["env.platform"] = self.environment.platform
        return {TAG_PREFIX + k: v for k, v in t.items() if v != ""}


def _digest(obj: Any) -> str:
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def collect(start: str | os.PathLike[str] | None = None) -> Snapshot:
    """Collect lineage for the working directory ``start`` (default: cwd). Never raises."""
    t0 = time.perf_counter()
    here = Path(start or os.getcwd())
    problems: list[str] = []
    g: git_lineage.GitInfo | None = None
    try:
        g = git_lineage.collect(here)
    except Exception as e:  # lineage must never fail a run: record and go on
        problems.append(f"git: {type(e).__name__}: {e}"[:300])
    root = None
    outputs: list[dvc.DvcOutput] = []
    try:
        root = dvc.find_root(here)
        if root is not None:
            outputs, dvc_problems = dvc.collect(root)
            problems.extend(f"dvc: {p}" for p in dvc_problems)
    except Exception as e:  # same: record, never raise
        problems.append(f"dvc: {type(e).__name__}: {e}"[:300])
    env: environment.Environment | None = None
    try:
        env = environment.fingerprint()
    except Exception as e:  # same
        problems.append(f"environment: {type(e).__name__}: {e}"[:300])
    return Snapshot(
        git=g,
        dvc_root=str(root) if root else "",
        datasets=tuple(outputs),
        environment=env,
        problems=tuple(problems),
        elapsed_ms=(time.perf_counter() - t0) * 1000,
    )
