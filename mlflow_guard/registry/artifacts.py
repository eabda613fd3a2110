"""A model version's artifacts as a local directory, located by the server itself.

A client-supplied ``source`` is accepted only in the forms the server can resolve through its
own stores: ``runs:/<run_id>/<path>`` (the run's artifact URI from the tracking store),
``models:/m-<id>[/<path>]`` (the logged model's artifact location), ``models:/<name>/<version>``
(the source of that registered version) and ``mlflow-artifacts:/<path>`` (the server's
``--artifacts-destination``). Local artifact stores are read in place; any other store is
downloaded to a temporary directory that is removed afterwards. The bytes are then hashed by
:func:`mlflow_guard.core.oms.verify_model`; nothing the client says about them is believed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlflow_guard.core.errors import UsageError

_MAX_HOPS = 4


def tracking_store() -> Any:
    """MLflow's tracking store of this server."""
    from mlflow.server.handlers import _get_tracking_store

    return _get_tracking_store()


def registry_store() -> Any:
    """MLflow's model registry store of this server."""
    from mlflow.server.handlers import _get_model_registry_store

    return _get_model_registry_store()


def _segments(path: str) -> list[str]:
    segs = [s for s in path.split("/") if s]
    if any(s in (".", "..") for s in segs):
        raise UsageError(f"artifact path {path!r} has '.' or '..' segments")
    return segs


def _join(base: str, sub: list[str]) -> str:
    return base.rstrip("/") + ("/" + "/".join(sub) if sub else "")


def storage_uri(source: str, *, trusted: bool = False) -> str:
    """Resolve ``source`` to a storage URI through the server's stores.

    Args:
        source: a model version source.
        trusted: the URI came from the server's own store (a run's artifact URI), so local
            paths and cloud URIs are acceptable; a client's source never is.

    Raises:
        UsageError: a form the server cannot resolve (fail closed).
    """
    for _ in range(_MAX_HOPS):
        parsed = urlparse(source)
        segs = _segments(unquote(parsed.netloc + parsed.path))
        if parsed.scheme == "runs" and segs:
            run = tracking_store().get_run(segs[0])
            source, trusted = _join(run.info.artifact_uri, segs[1:]), True
            continue
        if parsed.scheme == "models" and segs and segs[0].startswith("m-"):
            lm = tracking_store().get_logged_model(segs[0])
            source, trusted = _join(lm.artifact_location, segs[1:]), True
            continue
        if parsed.scheme == "models" and len(segs) == 2:
            mv = registry_store().get_model_version(segs[0], segs[1])
            source = mv.source
            continue
        if parsed.scheme == "mlflow-artifacts" or trusted:
            return source
        break
    raise UsageError(
        f"model version source {source!r} cannot be resolved by the server",
        hint="register from runs:/<run_id>/<path>, models:/m-<id> or mlflow-artifacts:/<path>",
    )


@contextmanager
def local_copy(source: str) -> Iterator[Path]:
    """Yield a local directory holding the artifacts of ``source`` (in place when local)."""
    uri = storage_uri(source)
    parsed = urlparse(uri)
    if parsed.scheme == "mlflow-artifacts":
        from mlflow.server.handlers import _get_artifact_repo_mlflow_artifacts

        repo: Any = _get_artifact_repo_mlflow_artifacts()  # type: ignore[no-untyped-call]
        rel = "/".join(_segments(unquote(parsed.path)))
    else:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo, rel = get_artifact_repository(uri), ""  # noqa: RUF100
    root = getattr(repo, "artifact_dir", None)
    if isinstance(root, str) and os.path.isdir(root):
        base = Path(root).resolve()
        path = (base / rel) if rel else base
        if not path.resolve().is_relative_to(base):
            raise UsageError(f"artifact path {rel!r} leaves the artifact store")
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="guard-registry-"))
    try:
        out = repo.download_artifacts(rel or "", dst_path=str(tmp))
        yield Path(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
