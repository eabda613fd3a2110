"""Input hardening for what guard parses: artifact paths, model source URIs and tag keys.

Each check either returns the normalised value or raises :class:`BadRequest` with a message
saying what was wrong and what is accepted; nothing malformed is passed on to MLflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from mlflow_guard.server.request_view import BadRequest

GUARD_TAG_PREFIX = "mlflow_guard."
RUN_AUTHOR_TAG = "mlflow.user"
_RUN_ID = re.compile(r"^[0-9a-zA-Z_-]{1,64}\Z")


def check_artifact_path(path: str) -> str:
    """Reject traversal and ambiguity in an artifact path; return it unchanged if clean.

    Refused: ``..`` segments, absolute paths, backslashes, NUL/control characters, and any
    ``%`` left after the server's one URL decoding (a double-encoded path).
    """
    problems = []
    if "\\" in path:
        problems.append("contains a backslash")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        problems.append("is absolute")
    if any(seg in ("..", ".") for seg in path.split("/")):
        problems.append("has a '.' or '..' segment")
    if "%" in path and unquote(path) != path:
        problems.append("is percent-encoded twice")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        problems.append("contains control characters")
    if problems:
        raise BadRequest(
            f"unsafe artifact path {path!r}: "
            + ", ".join(problems)
            + "; use a relative path of plain segments under <experiment_id>/"
        )
    return path


def copy_source(source: str) -> tuple[str, str] | None:
    """``(name, version)`` when ``source`` names a registered model version (a copy).

    ``MlflowClient.copy_model_version`` registers ``models:/<name>/<version>``. Only a plain
    name and a decimal version are accepted (no alias, no ``latest``, nothing encoded): the
    server looks that exact version up and checks the caller may read it.
    """
    if not source.startswith("models:/") or any(ord(c) < 32 for c in source) or "\\" in source:
        return None
    segs = source[len("models:/") :].split("/")
    if len(segs) != 2 or not segs[1].isdigit() or segs[0].startswith("m-"):
        return None
    name, version = segs
    if not name or name in (".", "..") or "%" in name or name != name.strip():
        return None
    return name, version


_T = TypeVar("_T")


def split_copied_guard_tags(
    tags: Sequence[_T], key_value: Callable[[_T], tuple[str, object]], source: Mapping[str, str]
) -> tuple[list[_T], list[str]]:
    """A copy's tags without the server-only ones it repeats from its source version.

    ``copy_model_version`` sends every tag of the source. Returns ``(kept, forged)``: ``kept``
    are the tags outside the ``mlflow_guard.`` namespace (the server writes its own for the new
    version); ``forged`` are the server-only keys whose value is not the source's own.
    """
    kept: list[_T] = []
    forged: list[str] = []
    for t in tags:
        key, value = key_value(t)
        if not key.strip().lower().startswith(GUARD_TAG_PREFIX):
            kept.append(t)
        elif source.get(key) != value:
            forged.append(key)
    return kept, forged


def source_run_and_experiment(source: str) -> tuple[str | None, str | None, str | None]:
    """Classify a model version ``source`` URI.

    Returns ``(run_id, logged_model_id, experiment_id)`` with exactly one set.

    Raises:
        BadRequest: an unsupported scheme (local paths, ``file:``, cloud URIs the server
            cannot attribute) or a malformed URI.
    """
    if not source or any(ord(c) < 32 for c in source) or "\\" in source:
        raise BadRequest(f"malformed model version source {source!r}")
    parsed = urlparse(source)
    segs = [s for s in (parsed.netloc + parsed.path).split("/") if s]
    if any(s in ("..", ".") or "%" in s for s in segs):
        raise BadRequest(f"model version source {source!r} has '..' or encoded segments")
    if parsed.scheme == "runs" and segs and _RUN_ID.match(segs[0]):
        return segs[0], None, None
    if parsed.scheme == "models" and segs and segs[0].startswith("m-") and _RUN_ID.match(segs[0]):
        return None, segs[0], None
    if parsed.scheme == "mlflow-artifacts" and segs and segs[0].isdigit():
        if len(segs) >= 3 and segs[1] == "models" and _RUN_ID.match(segs[2]):
            return None, segs[2], None
        if len(segs) >= 2 and _RUN_ID.match(segs[1]):
            return segs[1], None, None
        return None, None, segs[0]
    raise BadRequest(
        f"model version source {source!r} is not accepted: guard needs a source it can "
        "attribute to an experiment (runs:/<run_id>/..., models:/m-<id>, or "
        "mlflow-artifacts:/<experiment_id>/...)"
    )


def _tag_keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value]
    if isinstance(value, list):
        return [str(t.get("key", "")) for t in value if isinstance(t, dict)]
    return []


def guard_tag_keys(body: Any, *, key_field: bool, extra: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    """Tag keys in a request that fall in the server-only ``mlflow_guard.`` namespace."""
    keys: list[str] = list(extra)
    if isinstance(body, dict):
        keys += _tag_keys(body.get("tags"))
        if key_field and isinstance(body.get("key"), str):
            keys.append(body["key"])
    return [k for k in keys if k.strip().lower().startswith(GUARD_TAG_PREFIX)]


def run_author_rewrite(endpoint: str | None, body: Any, user: str) -> str | None:
    """What a run tag write would do to ``mlflow.user``, when it would change it; else ``None``.

    The server binds ``mlflow.user`` to the authenticated user at ``runs/create`` (MLflow's UI
    shows it as the run's author). Afterwards a client may only write the same value: setting
    another name (set-tag, log-batch) or deleting the tag is refused.
    """
    if not isinstance(body, dict):
        return None
    if endpoint == "_set_tag" and body.get("key") == RUN_AUTHOR_TAG:
        values = [body.get("value")]
    elif endpoint == "_log_batch" and isinstance(body.get("tags"), list):
        values = [
            t.get("value")
            for t in body["tags"]
            if isinstance(t, dict) and t.get("key") == RUN_AUTHOR_TAG
        ]
    elif endpoint == "_delete_tag" and body.get("key") == RUN_AUTHOR_TAG:
        return f"delete '{RUN_AUTHOR_TAG}'"
    else:
        return None
    wrong = [v for v in values if v != user]
    return f"set '{RUN_AUTHOR_TAG}' to {wrong[0]!r}" if wrong else None
