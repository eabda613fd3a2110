"""Resolvers: which experiments / registered models a request touches, from the backend store.

A client's claim is never believed: a run id is looked up to find its experiment, an artifact
path's first segment must name an existing experiment, a logged model is looked up by id. A
missing or malformed identifier is a 400; an identifier naming nothing is a 404.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlflow_guard.core.access import Resource
from mlflow_guard.core.policy import Action
from mlflow_guard.server.hardening import check_artifact_path
from mlflow_guard.server.request_view import BadRequest, NotFound, RequestView

_DIGITS = re.compile(r"^[0-9]{1,19}\Z")
_RUN_ID = re.compile(r"^[0-9a-zA-Z_-]{1,64}\Z")


class Backend:
    """Read access to MLflow's tracking store, with two caches.

    A run never moves to another experiment, nor a logged model, so run/model id → experiment
    id is cached for good. Experiment names can change (rename, delete, restore): a name is
    cached together with the guard revision read at the start of the request, and the server
    bumps the revision after every such change, so every replica drops stale names at its next
    request.

    Args:
        revision: returns the revision read for the current request (``None``: do not cache).
    """

    def __init__(self, revision: Callable[[], int | None] = lambda: None) -> None:
        self._exp_of: dict[str, str] = {}
        self._names: dict[str, tuple[str, int]] = {}
        self._revision = revision
        self._lock = threading.Lock()

    @staticmethod
    def _tracking() -> Any:
        from mlflow.server.handlers import _get_tracking_store

        return _get_tracking_store()

    def experiment(self, experiment_id: str) -> Resource:
        """The experiment resource for an id (404 if it does not exist)."""
        if not _DIGITS.match(experiment_id):
            raise BadRequest(f"experiment id must be a decimal number, got {experiment_id!r}")
        rev = self._revision()
        with self._lock:
            hit = self._names.get(experiment_id)
        if rev is not None and hit is not None and hit[1] == rev:
            return Resource("experiment", hit[0])
        from mlflow.exceptions import MlflowException

        try:
            exp = self._tracking().get_experiment(experiment_id)
        except MlflowException as e:
            raise NotFound(f"experiment {experiment_id} not found") from e
        if rev is not None:
            with self._lock:
                if len(self._names) > 100_000:
                    self._names.clear()
                self._names[experiment_id] = (str(exp.name), rev)
        return Resource("experiment", exp.name)

    def experiment_by_name(self, name: str) -> Resource:
        """The experiment resource for a name (the name itself; existence checked by MLflow)."""
        return Resource("experiment", name)

    def _cached(self, key: str, fetch: Callable[[], str]) -> str:
        with self._lock:
            hit = self._exp_of.get(key)
        if hit is not None:
            return hit
        value = fetch()
        with self._lock:
            if len(self._exp_of) > 100_000:
                self._exp_of.clear()
            self._exp_of[key] = value
        return value

    def run_experiment(self, run_id: str) -> Resource:
        """The experiment a run belongs to."""
        if not _RUN_ID.match(run_id):
            raise BadRequest(f"malformed run id {run_id!r}")
        from mlflow.exceptions import MlflowException

        def fetch() -> str:
            try:
                return str(self._tracking().get_run(run_id).info.experiment_id)
            except MlflowException as e:
                raise NotFound(f"run {run_id} not found") from e

        return self.experiment(self._cached(f"run:{run_id}", fetch))

    def model_version(self, name: str, version: str) -> Any:
        """A registered model version (MLflow entity) from the registry store (404 if none)."""
        from mlflow.exceptions import MlflowException
        from mlflow.server.handlers import _get_model_registry_store

        store: Any = _get_model_registry_store()
        try:
            return store.get_model_version(name, version)
        except MlflowException as e:
            raise NotFound(f"model version {name} {version} not found") from e

    def logged_model_experiment(self, model_id: str) -> Resource:
        """The experiment a logged model belongs to."""
        if not _RUN_ID.match(model_id):
            raise BadRequest(f"malformed logged model id {model_id!r}")
        from mlflow.exceptions import MlflowException

        def fetch() -> str:
            try:
                return str(self._tracking().get_logged_model(model_id).experiment_id)
            except MlflowException as e:
                raise NotFound(f"logged model {model_id} not found") from e

        return self.experiment(self._cached(f"model:{model_id}", fetch))

    def trace_experiments(self, trace_ids: list[str]) -> dict[str, str]:
        """Experiment id of each trace in ``trace_ids`` that exists (new ids are absent).

        One batched query, never cached: ``start_trace`` can move a trace to another
        experiment.
        """
        if not trace_ids:
            return {}
        out: dict[str, str] = {}
        for info in self._tracking().batch_get_trace_infos(list(trace_ids)):
            exp = info.experiment_id
            if not exp:
                raise RuntimeError(f"trace {info.trace_id} has no MLflow experiment")
            out[str(info.trace_id)] = str(exp)
        return out


def _required(view: RequestView, *names: str) -> str:
    values = {v for n in names if (v := view.param(n))}
    if len(values) > 1:
        raise BadRequest(f"conflicting values for {' / '.join(names)}")
    if not values:
        raise BadRequest(f"missing required parameter {' or '.join(repr(n) for n in names)}")
    return values.pop()


def experiment_id(view: RequestView, be: Backend) -> list[Resource]:
    """``experiment_id`` parameter."""
    return [be.experiment(_required(view, "experiment_id"))]


def experiment_name(view: RequestView, be: Backend) -> list[Resource]:
    """``experiment_name`` parameter (get-by-name)."""
    return [be.experiment_by_name(_required(view, "experiment_name"))]


def experiment_create(view: RequestView, be: Backend) -> list[Resource]:
    """``name`` of the experiment to create."""
    return [be.experiment_by_name(_required(view, "name"))]


def experiment_rename(view: RequestView, be: Backend) -> list[Resource]:
    """Both the current experiment and its ``new_name`` (a rename may move it between globs)."""
    out = [be.experiment(_required(view, "experiment_id"))]
    if new := view.param("new_name"):
        out.append(be.experiment_by_name(new))
    return out


def experiment_ids(view: RequestView, be: Backend) -> list[Resource]:
    """Every id in ``experiment_ids`` (at least one)."""
    ids = view.param_list("experiment_ids")
    if not ids:
        raise BadRequest("missing required parameter 'experiment_ids' (guard needs explicit ids)")
    return [be.experiment(i) for i in dict.fromkeys(ids)]


def run(view: RequestView, be: Backend) -> list[Resource]:
    """``run_id`` / ``run_uuid`` → its experiment."""
    return [be.run_experiment(_required(view, "run_id", "run_uuid"))]


def run_ids(view: RequestView, be: Backend) -> list[Resource]:
    """Every id in ``run_ids`` *and* repeated ``run_id`` → their experiments.

    Both are checked: the bulk-interval handler reads ``run_ids``, the bulk handler ``run_id``,
    so checking only one of them would let the other name any run.
    """
    ids = view.param_list("run_ids") + view.param_list("run_id")
    if not ids:
        raise BadRequest("missing required parameter 'run_ids'")
    return list(dict.fromkeys(be.run_experiment(i) for i in dict.fromkeys(ids)))


def run_or_logged_model(view: RequestView, be: Backend) -> list[Resource]:
    """``run_id`` or ``model_id`` → experiment (exactly one)."""
    rid, mid = view.param("run_id"), view.param("model_id")
    if bool(rid) == bool(mid):
        raise BadRequest("exactly one of 'run_id' and 'model_id' must be given")
    return [be.run_experiment(rid)] if rid else [be.logged_model_experiment(str(mid))]


def logged_model_create(view: RequestView, be: Backend) -> list[Resource]:
    """``experiment_id`` of a new logged model and, when given, its ``source_run_id``'s.

    The source run becomes the ``run_id`` of every model version registered from the logged
    model (the run whose metrics and author the promotion gates read), so naming it is a write
    into that run's experiment.
    """
    out = experiment_id(view, be)
    if source := view.param("source_run_id"):
        out.append(be.run_experiment(source))
    return list(dict.fromkeys(out))


def logged_model(view: RequestView, be: Backend) -> list[Resource]:
    """Path parameter ``model_id`` → experiment."""
    mid = view.view_args.get("model_id")
    if not mid:
        raise BadRequest("missing logged model id in the path")
    return [be.logged_model_experiment(str(mid))]


def model_name(view: RequestView, be: Backend) -> list[Resource]:
    """Registered model ``name``."""
    return [Resource("model", _required(view, "name"))]


def model_rename(view: RequestView, be: Backend) -> list[Resource]:
    """Current and new registered model name."""
    return [
        Resource("model", _required(view, "name")),
        Resource("model", _required(view, "new_name")),
    ]


def _field(obj: Any, name: str, json_name: str) -> Any:
    """A protobuf field of a JSON object, by its proto name or its JSON name.

    MLflow's parser accepts both spellings (and refuses a body with both): so does guard.
    """
    if not isinstance(obj, dict):
        return None
    if name != json_name and name in obj and json_name in obj:
        raise BadRequest(f"request specifies both {name!r} and {json_name!r}")
    return obj.get(name, obj.get(json_name))


def _trace_info(view: RequestView) -> Any:
    return _field(_field(view.body, "trace", "trace"), "trace_info", "traceInfo")


def trace_create(view: RequestView, be: Backend) -> list[Resource]:
    """Experiment of a trace being started (``trace.trace_info.trace_location``)."""
    where = _field(_trace_info(view), "trace_location", "traceLocation")
    loc = _field(where, "mlflow_experiment", "mlflowExperiment")
    exp = _field(loc, "experiment_id", "experimentId")
    if exp is None or isinstance(exp, dict | list | bool):
        raise BadRequest("trace has no trace_location.mlflow_experiment.experiment_id")
    return [be.experiment(str(exp))]


def otel(view: RequestView, be: Backend) -> list[Resource]:
    """OTLP export: the experiment named by ``X-Mlflow-Experiment-Id`` and, when the
    ``X-Mlflow-Run-Id`` header is present, the experiment of that run (MLflow links the
    exported traces to it)."""
    exp = view.headers.get("x-mlflow-experiment-id")
    if not exp:
        raise BadRequest("missing header X-Mlflow-Experiment-Id (names the experiment to log to)")
    out = [be.experiment(exp)]
    if run_id := view.headers.get("x-mlflow-run-id"):
        out.append(be.run_experiment(run_id))
    return list(dict.fromkeys(out))


def artifact_path(view: RequestView, be: Backend) -> list[Resource]:
    """Proxied artifact path ``<experiment_id>/...`` → that experiment.

    Listing the artifact root (no path) is reserved for server admins by the engine.
    """
    raw = view.view_args.get("artifact_path")
    if raw is None:
        raw = view.param("path") or ""
    path = check_artifact_path(str(raw))
    first = path.split("/", 1)[0]
    if not first:
        raise BadRequest("artifact path must start with an experiment id", status=403)
    return [be.experiment(first)]


@dataclass(frozen=True)
class Link:
    """A further requirement of a request: ``action`` on ``resource``, because ``why``.

    Resolvers name the resource a route acts on; a link is another resource the request
    writes to or exposes (an existing trace it adds spans to, a logged model it links).
    """

    action: Action
    resource: Resource
    why: str


def _existing_traces(be: Backend, ids: list[str]) -> list[tuple[str, Resource]]:
    found = be.trace_experiments(ids)
    return [(t, be.experiment(found[t])) for t in ids if t in found]


def _otlp_links(view: RequestView, be: Backend) -> list[Link]:
    if view.otlp is None:
        raise BadRequest("OTLP export without a body")
    return [
        Link(
            Action.LOG,
            exp,
            f"trace {tid} already exists in experiment {exp.name!r} and MLflow adds the "
            "exported spans to it",
        )
        for tid, exp in _existing_traces(be, view.otlp.trace_ids())
    ]


def _start_trace_links(view: RequestView, be: Backend) -> list[Link]:
    tid = _field(_trace_info(view), "trace_id", "traceId")
    if tid is None:
        return []
    if not isinstance(tid, str):
        raise BadRequest("trace_info.trace_id must be a string")
    target = trace_create(view, be)[0]
    out: list[Link] = []
    for _, exp in _existing_traces(be, [tid]):
        why = f"trace {tid} already exists in experiment {exp.name!r} and start-trace rewrites it"
        out.append(Link(Action.LOG, exp, why))
        if exp != target:
            moved = f"{why} and moves it (with its spans) to experiment {target.name!r}"
            out.append(Link(Action.READ, exp, moved))
    return out


def _model_links(view: RequestView, be: Backend) -> list[Link]:
    models = _field(view.body, "models", "models")
    if models is None:
        return []
    if not isinstance(models, list):
        raise BadRequest("parameter 'models' must be a list")
    role = "input" if view.endpoint == "_log_inputs" else "output"
    out: list[Link] = []
    for m in models:
        if not isinstance(m, dict):
            raise BadRequest("each entry of 'models' must be an object")
        mid = _field(m, "model_id", "modelId")
        if mid is None or mid == "":
            continue
        if not isinstance(mid, str):
            raise BadRequest("models[].model_id must be a string")
        exp = be.logged_model_experiment(mid)
        why = f"logged model {mid} of experiment {exp.name!r} would be linked as the run's {role}"
        out.append(Link(Action.READ, exp, why))
    return out


LINKS: dict[str, Callable[[RequestView, Backend], list[Link]]] = {
    "fastapi:export_traces": _otlp_links,
    "_start_trace_v3": _start_trace_links,
    "_log_inputs": _model_links,
    "_log_outputs": _model_links,
}


def links(view: RequestView, be: Backend) -> list[Link]:
    """The further requirements of ``view`` (see :class:`Link`); none for most routes."""
    find = LINKS.get(view.endpoint or "")
    return find(view, be) if find is not None else []


RESOLVERS: dict[str, Callable[[RequestView, Backend], list[Resource]]] = {
    f.__name__: f
    for f in (
        experiment_id,
        experiment_name,
        experiment_create,
        experiment_rename,
        experiment_ids,
        run,
        run_ids,
        run_or_logged_model,
        logged_model_create,
        logged_model,
        model_name,
        model_rename,
        trace_create,
        otel,
        artifact_path,
    )
}
