"""Log-time hook: every model logged through MLflow gets provenance and, with a key, ``model.sig``.

Mechanism (chosen for least surprise, see docs/client-plugins.md): in MLflow 3 every
``mlflow.<flavor>.log_model`` saves the model into a temporary folder owned by MLflow and then
uploads it with one call, ``MlflowClient.log_model_artifacts(model_id, local_dir)``. This module
wraps that single method: before the upload it writes ``guard.provenance.json`` and ``model.sig``
into MLflow's temporary folder, so the model arrives in the artifact store already signed, for
every flavor and every tracking backend (file, SQL, HTTP server), and
``log_model(..., registered_model_name=...)`` registers a signed model with no extra step.
The user's own folders are never written to.

The hook is installed when MLflow first consults the guard run context provider (every
``mlflow.start_run``), or explicitly with ``mlflow_guard.enable()``. Set
``MLFLOW_GUARD_LOG_TIME=off`` to disable it. It never fails a ``log_model`` call: a missing key
file, a wrong passphrase or a lineage problem is logged as an error and recorded in the model's
``guard.signing.status`` tag; the server's registration gate then refuses the unsigned model.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow_guard.core.errors import GuardError

_logger = logging.getLogger("mlflow_guard")
_lock = threading.Lock()
_installed = False
_snapshots: OrderedDict[str, Any] = OrderedDict()
_logged_runs: set[str] = set()
ENABLE_ENV = "MLFLOW_GUARD_LOG_TIME"
STATUS_TAG = "guard.signing.status"
NO_KEY = (
    "unsigned: no signing key configured; set MLFLOW_GUARD_SIGNING_KEY to a model key "
    "(`mlflow-guard keys generate --purpose model`) listed in the policy"
)


def enabled() -> bool:
    """Whether the hook acts (``MLFLOW_GUARD_LOG_TIME`` is not ``off``/``0``/``false``)."""
    return os.environ.get(ENABLE_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def remember_snapshot(snapshot: Any) -> None:
    """Keep the lineage snapshot taken at run start, to reuse it at log time (bounded)."""
    with _lock:
        _snapshots[snapshot.sha256] = snapshot
        while len(_snapshots) > 16:
            _snapshots.popitem(last=False)


def install() -> None:
    """Wrap ``MlflowClient.log_model_artifacts`` (idempotent; cheap)."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        from mlflow.tracking.client import MlflowClient

        original = MlflowClient.log_model_artifacts
        if getattr(original, "__mlflow_guard__", False):
            _installed = True
            return

        @functools.wraps(original)
        def log_model_artifacts(
            self: Any, model_id: str, local_dir: str, artifact_path: str | None = None
        ) -> None:
            if artifact_path is None and enabled():
                before_upload(self, model_id, Path(local_dir))
            return original(self, model_id, local_dir, artifact_path)

        log_model_artifacts.__mlflow_guard__ = True  # type: ignore[attr-defined]
        setattr(MlflowClient, "log_model_artifacts", log_model_artifacts)  # noqa: B010
        _installed = True


def _ms(t: int | None) -> datetime | None:
    return datetime.fromtimestamp(t / 1000, tz=UTC) if t else None


def _mlmodel_run_id(local_dir: Path) -> str:
    """The run id MLflow wrote into ``MLmodel`` (no tracking-server round trip, no YAML parse
    for the top-level ``run_id: <hex>`` line MLflow writes; YAML otherwise)."""
    try:
        text = (local_dir / "MLmodel").read_text(encoding="utf-8")
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("run_id: ") and line[8:].strip().isalnum():
            return line[8:].strip()
    import yaml

    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except yaml.YAMLError:
        return ""
    return str(doc.get("run_id") or "") if isinstance(doc, dict) else ""


def _run(client: Any, run_id: str) -> Any:
    """The run: the active run object when it is that run (no round trip), else fetched."""
    if not run_id:
        return None
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        return active
    return client.get_run(run_id)


def before_upload(client: Any, model_id: str, local_dir: Path) -> None:
    """Write provenance and signature into ``local_dir``; record the outcome. Never raises."""
    if not (local_dir / "MLmodel").is_file():
        return
    try:
        _before_upload(client, model_id, local_dir)
    except Exception as e:  # log_model must never fail because of guard: record it
        msg = e.diagnostics() if isinstance(e, GuardError) else f"{type(e).__name__}: {e}"
        _logger.error("mlflow-guard: model %s was NOT signed: %s", model_id, msg)
        try:
            client.set_logged_model_tags(model_id, {STATUS_TAG: f"error: {msg}"[:4000]})
        except Exception as tag_error:  # the store may be down too; the log line remains
            _logger.error("mlflow-guard: cannot record signing status: %s", tag_error)


def _before_upload(client: Any, model_id: str, local_dir: Path) -> None:
    from mlflow_guard.core import provenance
    from mlflow_guard.lineage import snapshot as lineage
    from mlflow_guard.plugins import attest, signing_key

    key_error = ""
    try:
        signer = signing_key.configured_signer()
    except GuardError as e:
        signer, key_error = None, e.diagnostics()
        _logger.error("mlflow-guard: model %s will NOT be signed: %s", model_id, key_error)
    run_id = _mlmodel_run_id(local_dir)
    run = _run(client, run_id)
    tags = run.data.tags if run is not None else {}
    snap = _snapshots.get(tags.get(lineage.TAG_PREFIX + "sha256", ""))
    if snap is None:
        snap = lineage.collect()
    info = provenance.RunInfo(
        run_id=run_id,
        experiment_id=str(run.info.experiment_id) if run is not None else "",
        model_id=model_id,
        user=run.info.user_id if run is not None else "",
        started_on=_ms(run.info.start_time) if run is not None else None,
    )
    entry = tags.get("mlflow.source.name", "") or (sys.argv[0] if sys.argv else "")
    prepared = attest.prepare(
        local_dir,
        model_name=model_id,
        snapshot=snap,
        run=info,
        signer=signer,
        entry_point=entry,
    )
    status = (
        f"signed by {prepared.key_id[:16]}"
        if prepared.signed
        else (f"error: {key_error}"[:4000] if key_error else NO_KEY)
    )
    out = {STATUS_TAG: status, "guard.provenance.subject_sha256": prepared.subject_digest}
    if prepared.root_digest:
        out["guard.model.root_sha256"] = prepared.root_digest
    client.set_logged_model_tags(model_id, out)
    if run is not None and run_id not in _logged_runs:
        _log_lineage_artifact(run.info.artifact_uri, snap.to_json())
        _logged_runs.add(run_id)


def _log_lineage_artifact(artifact_uri: str, doc: dict[str, Any]) -> None:
    """Write ``guard/lineage.json`` into the run's artifacts (no extra tracking round trip)."""
    import json
    import tempfile

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from mlflow_guard.lineage import snapshot as lineage

    folder, name = lineage.ARTIFACT_PATH.rsplit("/", 1)
    with tempfile.TemporaryDirectory(prefix="mlflow-guard-") as tmp:
        path = Path(tmp, name)
        path.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
        repo: Any = get_artifact_repository(artifact_uri)
        repo.log_artifact(str(path), folder)
