"""Red-team attacks by a low-privilege user against a live guard server.

Alice (data scientist: read/log/register on ``alice-*`` experiments and ``fraud-*`` models)
attacks data in ``rt-secret``, an experiment only the admin may write and only reviewers may
read, and in ``rt-shared``, which she may read but not write. Each test asserts the refusal,
its reason, and that nothing changed or leaked.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.server._server import PASSWORDS, POLICY, Server, start_guard
from tests.server.conftest import ADMIN, create_users

pytestmark = pytest.mark.slow
ALICE = ("alice", PASSWORDS["alice"])
SECRET = b"TOP-SECRET-ARTIFACT"


READ_SHARED = '  - {{role: data-scientist, allow: [read], experiments: "rt-shared"}}\n'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One guard server for this module (2 workers, SQLite); alice may also read rt-shared."""
    root = tmp_path_factory.mktemp("redteam")
    anchor = "  - {{role: reviewer"
    assert anchor in POLICY
    policy = POLICY.replace(anchor, READ_SHARED + anchor).format(guard_db=f"sqlite:///{root}/g.db")
    srv = start_guard(root, policy_text=policy)
    try:
        create_users(srv.url)
        yield srv
    finally:
        srv.stop()


def call(server: Server, method: str, path: str, who: tuple[str, str], **kw: Any) -> Any:
    return requests.request(method, f"{server.url}{path}", auth=who, timeout=60, **kw)


@pytest.fixture(scope="module")
def world(server: Server) -> dict[str, str]:
    """Alice's experiment and run; the admin's secret experiment, run, metric and artifact."""
    out: dict[str, str] = {}
    for who, name, key in ((ALICE, "alice-rt", "own"), (ADMIN, "rt-secret", "secret")):
        r = call(server, "POST", "/api/2.0/mlflow/experiments/create", who, json={"name": name})
        assert r.status_code == 200, r.text
        out[f"{key}_exp"] = exp = r.json()["experiment_id"]
        r = call(server, "POST", "/api/2.0/mlflow/runs/create", who, json={"experiment_id": exp})
        assert r.status_code == 200, r.text
        out[f"{key}_run"] = r.json()["run"]["info"]["run_id"]
    r = call(
        server,
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        ADMIN,
        json={"run_id": out["secret_run"], "key": "secret_auc", "value": 0.97, "timestamp": 1},
    )
    assert r.status_code == 200, r.text
    path = f"{out['secret_exp']}/{out['secret_run']}/artifacts/secret.txt"
    r = call(server, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}", ADMIN, data=SECRET)
    assert r.status_code == 200, r.text
    out["secret_path"] = path
    r = call(
        server, "POST", "/api/2.0/mlflow/experiments/create", ADMIN, json={"name": "rt-shared"}
    )
    assert r.status_code == 200, r.text
    out["shared_exp"] = r.json()["experiment_id"]
    for key in ("shared", "secret"):
        body = {"experiment_id": out[f"{key}_exp"], "name": f"{key}-model"}
        r = call(server, "POST", "/api/2.0/mlflow/logged-models", ADMIN, json=body)
        assert r.status_code == 200, r.text
        out[f"{key}_model"] = r.json()["model"]["info"]["model_id"]
    tid = os.urandom(16)
    r = export_spans(server, ADMIN, out["secret_exp"], otlp_body(tid))
    assert r.status_code == 200, r.text
    out["secret_trace"] = "tr-" + tid.hex()
    assert (out["secret_trace"], int(out["secret_exp"])) in traces_in(server)
    return out


def raw(
    server: Server, request_line: str, headers: list[tuple[str, str]], body: bytes = b""
) -> Any:
    """Send an exact request (repeated headers, un-normalised path); return (status, body)."""
    u = urlparse(server.url)
    lines = [request_line + " HTTP/1.1", f"Host: {u.hostname}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    assert u.hostname
    assert u.port
    with socket.create_connection((u.hostname, u.port), timeout=60) as c:
        c.sendall("\r\n".join(lines).encode() + body)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


def basic(who: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{who[0]}:{who[1]}".encode()).decode()


def otlp_request(trace_id: bytes | None = None) -> Any:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = trace_id or os.urandom(16), os.urandom(8), "injected"
    span.start_time_unix_nano = 1_700_000_000_000_000_000
    span.end_time_unix_nano = 1_700_000_001_000_000_000
    return req


def otlp_body(trace_id: bytes | None = None) -> bytes:
    return bytes(otlp_request(trace_id).SerializeToString())


def otlp_json(trace_id: bytes) -> bytes:
    """The same export in OTLP JSON (ids in hex, as OTel collectors send them)."""
    from google.protobuf.json_format import MessageToDict

    doc = MessageToDict(otlp_request(trace_id))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for k in ("traceId", "spanId"):
                    span[k] = base64.b64decode(span[k]).hex()
    return json.dumps(doc).encode()


def export_spans(
    server: Server,
    who: tuple[str, str],
    experiment_id: str,
    body: bytes,
    content_type: str = "application/x-protobuf",
    encoding: str | None = None,
) -> Any:
    headers = {"Content-Type": content_type, "X-Mlflow-Experiment-Id": experiment_id}
    if encoding:
        headers["Content-Encoding"] = encoding
    return call(server, "POST", "/v1/traces", who, data=body, headers=headers)


def trace_state(server: Server, trace_id: str) -> dict[str, list[Any]]:
    """Everything MLflow stores about one trace (info, tags, metadata, spans)."""
    queries = {
        "info": "SELECT * FROM trace_info WHERE request_id = ?",
        "tags": "SELECT key, value FROM trace_tags WHERE request_id = ? ORDER BY key",
        "meta": "SELECT key, value FROM trace_request_metadata WHERE request_id = ? ORDER BY key",
        "spans": "SELECT span_id, experiment_id, content FROM spans WHERE trace_id = ? "
        "ORDER BY span_id",
    }
    with sqlite3.connect(Path(server.root) / "mlflow.db") as db:
        return {k: list(db.execute(q, (trace_id,))) for k, q in queries.items()}


def model_state(server: Server, model_id: str) -> dict[str, list[Any]]:
    """A logged model's tags and the run inputs/outputs that name it."""
    with sqlite3.connect(Path(server.root) / "mlflow.db") as db:
        tags = (
            "SELECT tag_key, tag_value FROM logged_model_tags WHERE model_id = ? ORDER BY tag_key"
        )
        links = "SELECT source_id, destination_type FROM inputs WHERE destination_id = ?"
        return {
            "tags": list(db.execute(tags, (model_id,))),
            "links": sorted(db.execute(links, (model_id,))),
        }


def traces_in(server: Server) -> list[tuple[str, int]]:
    with sqlite3.connect(Path(server.root) / "mlflow.db") as db:
        return list(db.execute("SELECT request_id, experiment_id FROM trace_info"))


def trace_links(server: Server) -> list[tuple[str, str]]:
    with sqlite3.connect(Path(server.root) / "mlflow.db") as db:
        return list(
            db.execute(
                "SELECT source_id, destination_id FROM entity_associations "
                "WHERE source_type = 'trace'"
            )
        )


# -- bypasses found and fixed ------------------------------------------------------------------


def test_metric_history_bulk_checks_every_run_id(server: Server, world: dict[str, str]) -> None:
    """``get-history-bulk`` reads ``run_id``; guard used to check only ``run_ids`` when both
    were present, so an own run in ``run_ids`` unlocked any run in ``run_id``."""
    params = {
        "run_ids": world["own_run"],
        "run_id": world["secret_run"],
        "metric_key": "secret_auc",
    }
    r = call(server, "GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk", ALICE, params=params)
    assert r.status_code == 403, r.text
    assert "alice may not read on experiment 'rt-secret'" in r.json()["message"]
    assert "0.97" not in r.text


def test_otlp_duplicate_experiment_header_is_refused(server: Server, world: dict[str, str]) -> None:
    """MLflow reads the first ``X-Mlflow-Experiment-Id``; guard used to check the last one."""
    before = traces_in(server)
    status, body = raw(
        server,
        "POST /v1/traces",
        [
            ("Authorization", basic(ALICE)),
            ("Content-Type", "application/x-protobuf"),
            ("X-Mlflow-Experiment-Id", world["secret_exp"]),
            ("X-Mlflow-Experiment-Id", world["own_exp"]),
        ],
        otlp_body(),
    )
    assert status == 400, body
    assert b"experiment id must be a decimal number" in body
    assert traces_in(server) == before


def test_otlp_run_link_needs_log_on_the_run(server: Server, world: dict[str, str]) -> None:
    """``X-Mlflow-Run-Id`` links the exported traces to that run: guard must check it too."""
    before, links = traces_in(server), trace_links(server)
    status, body = raw(
        server,
        "POST /v1/traces",
        [
            ("Authorization", basic(ALICE)),
            ("Content-Type", "application/x-protobuf"),
            ("X-Mlflow-Experiment-Id", world["own_exp"]),
            ("X-Mlflow-Run-Id", world["secret_run"]),
        ],
        otlp_body(),
    )
    assert status == 403, body
    assert b"alice may not log on experiment 'rt-secret'" in body
    assert traces_in(server) == before
    assert trace_links(server) == links


def test_logged_model_source_run_needs_log_on_that_run(
    server: Server, world: dict[str, str]
) -> None:
    """A logged model's ``source_run_id`` becomes the model version's ``run_id`` (the run whose
    metrics and author the promotion gates read): it may not name someone else's run."""
    body = {"experiment_id": world["own_exp"], "name": "m", "source_run_id": world["secret_run"]}
    r = call(server, "POST", "/api/2.0/mlflow/logged-models", ALICE, json=body)
    assert r.status_code == 403, r.text
    assert "alice may not log on experiment 'rt-secret'" in r.json()["message"]
    r = call(
        server,
        "POST",
        "/api/2.0/mlflow/logged-models/search",
        ADMIN,
        json={"experiment_ids": [world["own_exp"]]},
    )
    assert r.status_code == 200, r.text
    sources = [m["info"].get("source_run_id") for m in r.json().get("models", [])]
    assert world["secret_run"] not in sources


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/api/2.0/mlflow/runs/set-tag", {"key": "mlflow.user", "value": "bob"}),
        ("/api/2.0/mlflow/runs/log-batch", {"tags": [{"key": "mlflow.user", "value": "bob"}]}),
        ("/api/2.0/mlflow/runs/delete-tag", {"key": "mlflow.user"}),
    ],
)
def test_run_author_tag_cannot_be_rewritten(
    server: Server, world: dict[str, str], path: str, payload: dict[str, Any]
) -> None:
    """``mlflow.user`` is bound to the authenticated user at ``runs/create`` (the UI shows it
    as the run's author); a later set-tag, log-batch or delete-tag must not change it."""
    r = call(server, "POST", path, ALICE, json={"run_id": world["own_run"], **payload})
    assert r.status_code == 403, r.text
    assert "'mlflow.user' is bound to the authenticated user" in r.json()["message"]
    run = call(
        server, "GET", "/api/2.0/mlflow/runs/get", ALICE, params={"run_id": world["own_run"]}
    )
    tags = {t["key"]: t["value"] for t in run.json()["run"]["data"]["tags"]}
    assert tags["mlflow.user"] == "alice"


def test_run_author_tag_with_own_name_is_allowed(server: Server, world: dict[str, str]) -> None:
    body = {"run_id": world["own_run"], "key": "mlflow.user", "value": "alice"}
    r = call(server, "POST", "/api/2.0/mlflow/runs/set-tag", ALICE, json=body)
    assert r.status_code == 200, r.text


def _secret_trace_id(world: dict[str, str]) -> bytes:
    return bytes.fromhex(world["secret_trace"][len("tr-") :])


@pytest.mark.parametrize(
    ("encode", "content_type", "encoding"),
    [
        (otlp_body, "application/x-protobuf", None),
        (otlp_json, "application/json", None),
        (lambda t: gzip.compress(otlp_body(t)), "application/x-protobuf", "gzip"),
        (lambda t: gzip.compress(b"") + gzip.compress(otlp_json(t)), "application/json", "gzip"),
    ],
    ids=["protobuf", "json", "gzip", "gzip-members-json"],
)
def test_otlp_spans_cannot_join_a_trace_of_another_experiment(
    server: Server, world: dict[str, str], encode: Any, content_type: str, encoding: str | None
) -> None:
    """MLflow stores spans whose trace id exists into that trace, whatever experiment the
    request names: alice (log on her own experiment) could add spans to rt-secret's trace."""
    before, traces = trace_state(server, world["secret_trace"]), traces_in(server)
    body = encode(_secret_trace_id(world))
    r = export_spans(server, ALICE, world["own_exp"], body, content_type, encoding)
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert f"trace {world['secret_trace']} already exists in experiment 'rt-secret'" in message
    assert "alice may not log on experiment 'rt-secret'" in message
    assert trace_state(server, world["secret_trace"]) == before
    assert traces_in(server) == traces


def test_otlp_one_foreign_trace_refuses_the_whole_export(
    server: Server, world: dict[str, str]
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest()
    req.MergeFrom(otlp_request())
    req.MergeFrom(otlp_request(_secret_trace_id(world)))
    before, traces = trace_state(server, world["secret_trace"]), traces_in(server)
    r = export_spans(server, ALICE, world["own_exp"], req.SerializeToString())
    assert r.status_code == 403, r.text
    assert "already exists in experiment 'rt-secret'" in r.json()["message"]
    assert trace_state(server, world["secret_trace"]) == before
    assert traces_in(server) == traces


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "message"),
    [
        (b"\x0a\x05junk", "application/x-protobuf", None, "malformed OTLP"),
        (b"{", "application/json", None, "malformed OTLP"),
        (b"", "text/plain", None, "OTLP Content-Type must be"),
        (b"not gzip", "application/x-protobuf", "gzip", "does not decompress"),
        (b"x", "application/x-protobuf", "br", "unsupported Content-Encoding"),
    ],
)
def test_otlp_unreadable_body_is_refused(
    server: Server,
    world: dict[str, str],
    body: bytes,
    content_type: str,
    encoding: str | None,
    message: str,
) -> None:
    """Guard cannot see the trace ids of a body it cannot read: fail closed."""
    traces = traces_in(server)
    r = export_spans(server, ALICE, world["own_exp"], body, content_type, encoding)
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]
    assert traces_in(server) == traces


def test_otlp_gzip_bomb_is_refused(server: Server, world: dict[str, str]) -> None:
    traces = traces_in(server)
    bomb = gzip.compress(b"\x00" * (17 * 1024 * 1024))
    r = export_spans(server, ALICE, world["own_exp"], bomb, encoding="gzip")
    assert r.status_code == 413, r.text
    assert "decompressed OTLP body exceeds the limit" in r.json()["message"]
    assert traces_in(server) == traces


def test_otlp_unreadable_body_from_anonymous_is_401(server: Server, world: dict[str, str]) -> None:
    r = requests.post(
        f"{server.url}/v1/traces",
        data=b"{",
        headers={"Content-Type": "application/json", "X-Mlflow-Experiment-Id": world["own_exp"]},
        timeout=30,
    )
    assert r.status_code == 401, r.text


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [("application/x-protobuf", None), ("application/json", "gzip"), ("application/json", None)],
)
def test_otlp_new_and_own_traces_are_stored(
    server: Server, world: dict[str, str], content_type: str, encoding: str | None
) -> None:
    """New trace ids, and more spans for one's own trace, still work (the body is replayed)."""
    tid = os.urandom(16)

    def encode() -> bytes:
        data = otlp_json(tid) if content_type == "application/json" else otlp_body(tid)
        return gzip.compress(data) if encoding else data

    for _ in range(2):  # the second export adds a span to alice's existing trace
        r = export_spans(server, ALICE, world["own_exp"], encode(), content_type, encoding)
        assert r.status_code == 200, r.text
    state = trace_state(server, "tr-" + tid.hex())
    assert [row[1] for row in state["spans"]] == [int(world["own_exp"])] * 2
    assert ("tr-" + tid.hex(), int(world["own_exp"])) in traces_in(server)


def start_trace(trace_id: str, experiment_id: str, camel: bool = False) -> dict[str, Any]:
    info = {
        "trace_id": trace_id,
        "trace_location": {
            "type": "MLFLOW_EXPERIMENT",
            "mlflow_experiment": {"experiment_id": experiment_id},
        },
        "request_time": "2024-01-01T00:00:00Z",
        "state": "OK",
    }
    if camel:
        info = {"traceId": trace_id, "traceLocation": info["trace_location"], "state": "OK"}
    return {"trace": {"trace_info": info}}


@pytest.mark.parametrize("camel", [False, True])
def test_start_trace_cannot_take_over_a_trace_of_another_experiment(
    server: Server, world: dict[str, str], camel: bool
) -> None:
    """``start_trace`` with an existing trace id rewrites that trace and moves it (with its
    spans) into the experiment the request names: alice could pull rt-secret's trace into
    her own experiment and read it there."""
    before, traces = trace_state(server, world["secret_trace"]), traces_in(server)
    body = start_trace(world["secret_trace"], world["own_exp"], camel)
    r = call(server, "POST", "/api/3.0/mlflow/traces", ALICE, json=body)
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert f"trace {world['secret_trace']} already exists in experiment 'rt-secret'" in message
    assert "alice may not log on experiment 'rt-secret'" in message
    assert trace_state(server, world["secret_trace"]) == before
    assert traces_in(server) == traces


def test_start_trace_with_a_new_id_is_allowed(server: Server, world: dict[str, str]) -> None:
    tid = "tr-" + os.urandom(16).hex()
    r = call(
        server, "POST", "/api/3.0/mlflow/traces", ALICE, json=start_trace(tid, world["own_exp"])
    )
    assert r.status_code == 200, r.text
    assert (tid, int(world["own_exp"])) in traces_in(server)


def test_model_version_linking_a_logged_model_needs_log_on_it(
    server: Server, world: dict[str, str]
) -> None:
    """``create_model_version`` with ``model_id`` writes a registry tag onto that logged model:
    read access to its experiment (rt-shared) is not enough."""
    r = call(
        server,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        ALICE,
        json={"name": "fraud-link"},
    )
    assert r.status_code == 200, r.text
    before = model_state(server, world["shared_model"])
    body = {
        "name": "fraud-link",
        "source": f"models:/{world['shared_model']}",
        "model_id": world["shared_model"],
    }
    r = call(server, "POST", "/api/2.0/mlflow/model-versions/create", ALICE, json=body)
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert f"logged model {world['shared_model']} of experiment 'rt-shared'" in message
    assert "alice may not log on experiment 'rt-shared'" in message
    assert model_state(server, world["shared_model"]) == before
    r = call(
        server, "GET", "/api/2.0/mlflow/registered-models/get", ALICE, params={"name": "fraud-link"}
    )
    assert r.status_code == 200, r.text
    assert not r.json()["registered_model"].get("latest_versions")


def test_copy_claiming_a_logged_model_needs_log_on_it(
    server: Server, world: dict[str, str]
) -> None:
    """A copy (``models:/NAME/VERSION`` source) that names a ``model_id`` links that logged
    model too (MLflow's SQL registry keeps no model id on versions, so a plain copy names
    none); a copy without one only needs read on the source."""
    model = world["shared_model"]
    for path, body in [
        ("registered-models/create", {"name": "fraud-shared"}),
        (
            "model-versions/create",
            {"name": "fraud-shared", "source": f"models:/{model}", "model_id": model},
        ),
    ]:
        r = call(server, "POST", f"/api/2.0/mlflow/{path}", ADMIN, json=body)
        assert r.status_code == 200, r.text
    version = r.json()["model_version"]["version"]
    copy = {"name": "fraud-shared-copy", "source": f"models:/fraud-shared/{version}"}
    r = call(server, "POST", "/api/2.0/mlflow/registered-models/create", ALICE, json=copy)
    assert r.status_code == 200, r.text
    before = model_state(server, model)
    forged = {**copy, "model_id": model}
    r = call(server, "POST", "/api/2.0/mlflow/model-versions/create", ALICE, json=forged)
    assert r.status_code == 403, r.text
    assert "alice may not log on experiment 'rt-shared'" in r.json()["message"]
    assert model_state(server, model) == before
    r = call(server, "POST", "/api/2.0/mlflow/model-versions/create", ALICE, json=copy)
    assert r.status_code == 200, r.text
    assert r.json()["model_version"]["source"] == copy["source"]


@pytest.mark.parametrize("route", ["runs/outputs", "runs/log-inputs"])
def test_run_cannot_link_an_unreadable_logged_model(
    server: Server, world: dict[str, str], route: str
) -> None:
    """Linking a logged model as a run's input or output needs read on the model's experiment."""
    before = model_state(server, world["secret_model"])
    models = [{"model_id": world["secret_model"], "step": 0}]
    if route == "runs/log-inputs":
        models = [{"modelId": world["secret_model"]}]
    body = {"run_id": world["own_run"], "models": models}
    r = call(server, "POST", f"/api/2.0/mlflow/{route}", ALICE, json=body)
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert f"logged model {world['secret_model']} of experiment 'rt-secret'" in message
    assert "alice may not read on experiment 'rt-secret'" in message
    assert model_state(server, world["secret_model"]) == before


@pytest.mark.parametrize("route", ["runs/outputs", "runs/log-inputs"])
def test_run_may_link_a_readable_logged_model(
    server: Server, world: dict[str, str], route: str
) -> None:
    models: list[dict[str, Any]] = [{"model_id": world["shared_model"]}]
    if route == "runs/outputs":
        models[0]["step"] = 0
    body = {"run_id": world["own_run"], "models": models}
    r = call(server, "POST", f"/api/2.0/mlflow/{route}", ALICE, json=body)
    assert r.status_code == 200, r.text
    links = model_state(server, world["shared_model"])["links"]
    assert (world["own_run"], "MODEL_OUTPUT" if route == "runs/outputs" else "MODEL_INPUT") in links


# -- attacks that were already refused (not covered elsewhere) ---------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "GET //api/2.0/mlflow-artifacts/artifacts/{p}",
        "GET /api/2.0//mlflow-artifacts/artifacts/{p}",
        "GET /ajax-api/2.0/mlflow-artifacts/artifacts/{p}",
        "GET /api/3.0/mlflow-artifacts/artifacts/{p}",
        "GET /API/2.0/mlflow-artifacts/artifacts/{p}",
        "GET /api/2.0/mlflow-artifacts/./artifacts/{p}",
        "GET /api/2.0/mlflow-artifacts/artifacts%2F{p}",
        "GET /api/2.0/mlflow-artifacts/artifacts;x/{p}",
        "HEAD /api/2.0/mlflow-artifacts/artifacts/{p}",
        "GET /api/2.0/mlflow-artifacts/artifacts/{own}/../{p}",
        "GET /get-artifact?run_id={run}&path=secret.txt",
        "HEAD /get-artifact?run_id={run}&path=secret.txt",
        "GET /get-artifact?run_id={own_run}&run_uuid={run}&path=secret.txt",
        "GET /api/2.0/mlflow-artifacts/artifacts?path={exp}",
        "GET /api/2.0/mlflow-artifacts/artifacts",
    ],
)
def test_path_tricks_do_not_reach_another_experiments_artifacts(
    server: Server, world: dict[str, str], template: str
) -> None:
    line = template.format(
        p=world["secret_path"],
        run=world["secret_run"],
        own=world["own_exp"],
        own_run=world["own_run"],
        exp=world["secret_exp"],
    )
    status, body = raw(server, line, [("Authorization", basic(ALICE))])
    assert status in (400, 403, 404), (line, status, body[:200])
    assert SECRET not in body


def test_identity_headers_are_not_trusted(server: Server, world: dict[str, str]) -> None:
    """Proxy-style identity headers authenticate nobody; only the credential counts."""
    spoof = {"X-Forwarded-User": "admin", "Remote-User": "admin", "X-Remote-User": "admin"}
    url = f"{server.url}/api/2.0/mlflow/runs/get"
    anon = requests.get(url, params={"run_id": world["secret_run"]}, headers=spoof, timeout=30)
    assert anon.status_code == 401
    r = requests.get(
        url, params={"run_id": world["secret_run"]}, headers=spoof, auth=ALICE, timeout=30
    )
    assert r.status_code == 403
    assert "alice may not read on experiment 'rt-secret'" in r.json()["message"]


def test_duplicate_authorization_header_is_refused(server: Server, world: dict[str, str]) -> None:
    """Two credentials in one request: guard and MLflow could read different ones."""
    status, body = raw(
        server,
        f"GET /api/2.0/mlflow/runs/get?run_id={world['own_run']}",
        [("Authorization", basic(ALICE)), ("Authorization", basic(ADMIN))],
    )
    assert status == 401, body
    assert b"malformed Basic credentials" in body
