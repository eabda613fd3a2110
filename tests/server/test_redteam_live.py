"""Red-team attacks by a low-privilege user against a live guard server.

Alice (data scientist: read/log/register on ``alice-*`` experiments and ``fraud-*`` models)
attacks data in ``rt-secret``, an experiment only the admin may write and only reviewers may
read. Each test asserts the refusal, its reason, and that nothing changed or leaked.
"""

from __future__ import annotations

import base64
import os
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.server._server import PASSWORDS, Server, start_guard
from tests.server.conftest import ADMIN, create_users

pytestmark = pytest.mark.slow
ALICE = ("alice", PASSWORDS["alice"])
SECRET = b"TOP-SECRET-ARTIFACT"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One guard server for this module (2 workers, SQLite)."""
    srv = start_guard(tmp_path_factory.mktemp("redteam"))
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


def otlp_body() -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), "injected"
    span.start_time_unix_nano = 1_700_000_000_000_000_000
    span.end_time_unix_nano = 1_700_000_001_000_000_000
    return req.SerializeToString()


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
