"""Input hardening against the running server: clear 4xx, never 500, never a pass."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.server._server import PASSWORDS, Server

pytestmark = pytest.mark.slow
ALICE = ("alice", PASSWORDS["alice"])


@pytest.fixture(scope="module")
def exp_run(guard_server: Server) -> dict[str, str]:
    s = requests.Session()
    s.auth = ALICE
    exp = s.post(
        f"{guard_server.url}/api/2.0/mlflow/experiments/create",
        json={"name": "alice-hardening"},
        timeout=30,
    ).json()["experiment_id"]
    run = s.post(
        f"{guard_server.url}/api/2.0/mlflow/runs/create", json={"experiment_id": exp}, timeout=30
    ).json()["run"]["info"]["run_id"]
    return {"exp": exp, "run": run}


def raw_request(server: Server, request_line: str, body: bytes = b"") -> int:
    """Send a request with an exact, un-normalised path; return the status code."""
    import base64

    u = urlparse(server.url)
    cred = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    head = (
        f"{request_line} HTTP/1.1\r\nHost: {u.hostname}\r\nAuthorization: Basic {cred}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((u.hostname, u.port), timeout=30) as c:
        c.sendall(head.encode() + body)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "tail",
    [
        "{exp}/../0/x.txt",
        "{exp}/%2e%2e/0/x.txt",
        "{exp}/%252e%252e/0/x.txt",
        "{exp}/a%5c..%5cb.txt",
        "%2Fetc/passwd",
        "{exp}/a/./b.txt",
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_unsafe_artifact_paths_are_400(
    guard_server: Server, exp_run: dict[str, str], tail: str, method: str
) -> None:
    path = "/api/2.0/mlflow-artifacts/artifacts/" + tail.format(exp=exp_run["exp"])
    status = raw_request(guard_server, f"{method} {path}", b"x" if method == "PUT" else b"")
    assert status == 400, (path, status)


def test_bad_bodies_are_4xx(guard_server: Server, exp_run: dict[str, str]) -> None:
    url = f"{guard_server.url}/api/2.0/mlflow/runs/log-batch"
    hdr = {"Content-Type": "application/json"}
    cases: list[tuple[bytes, int]] = [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'"{\\"run_id\\": 5"', 400),
        (b'{"run_id": ["a", "b"]}', 400),
        (b'{"run_id": "../../etc"}', 400),
        (b"{" * 100000 + b"}" * 100000, 400),
        (b'{"run_id": "' + b"a" * (17 * 1024 * 1024) + b'"}', 413),
    ]
    for body, want in cases:
        r = requests.post(url, data=body, headers=hdr, auth=ALICE, timeout=60)
        assert r.status_code == want, (body[:40], r.status_code, r.text[:200])
        assert r.json()["message"].startswith("mlflow-guard:")
    r = requests.post(
        f"{guard_server.url}/v1/traces",
        data=b"\x0a\xff\xff garbage",
        headers={
            "Content-Type": "application/x-protobuf",
            "X-Mlflow-Experiment-Id": exp_run["exp"],
        },
        auth=ALICE,
        timeout=30,
    )
    assert 400 <= r.status_code < 500, r.text
    r = requests.post(
        f"{guard_server.url}/v1/traces",
        data=b"",
        headers={"Content-Type": "application/x-protobuf"},
        auth=ALICE,
        timeout=30,
    )
    assert r.status_code == 400
    assert "X-Mlflow-Experiment-Id" in r.json()["message"]


@pytest.mark.parametrize(
    "source",
    [
        "file:///etc/passwd",
        "/tmp/model",
        "s3://bucket/model",
        "runs:/../../x/model",
        "mlflow-artifacts:/{exp}/%2e%2e/model",
        "models:/fraud-detector@champion",
        "models:/fraud-detector/latest",
    ],
)
def test_unattributable_model_sources_are_refused(
    guard_server: Server, exp_run: dict[str, str], source: str
) -> None:
    s = requests.Session()
    s.auth = ALICE
    s.post(
        f"{guard_server.url}/api/2.0/mlflow/registered-models/create",
        json={"name": "fraud-sources"},
        timeout=30,
    )
    r = s.post(
        f"{guard_server.url}/api/2.0/mlflow/model-versions/create",
        json={"name": "fraud-sources", "source": source.format(exp=exp_run["exp"])},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    assert "source" in r.json()["message"]


def test_source_in_unreadable_experiment_is_refused(guard_server: Server) -> None:
    from tests.server.conftest import ADMIN

    exp = requests.post(
        f"{guard_server.url}/api/2.0/mlflow/experiments/create",
        json={"name": "restricted-src"},
        auth=ADMIN,
        timeout=30,
    ).json()
    run = requests.post(
        f"{guard_server.url}/api/2.0/mlflow/runs/create",
        json={"experiment_id": exp["experiment_id"]},
        auth=ADMIN,
        timeout=30,
    ).json()["run"]["info"]["run_id"]
    body: dict[str, Any] = {"name": "fraud-sources", "source": f"runs:/{run}/model"}
    r = requests.post(
        f"{guard_server.url}/api/2.0/mlflow/model-versions/create",
        json=body,
        auth=ALICE,
        timeout=30,
    )
    assert r.status_code == 403
    assert "may not read on experiment 'restricted-src'" in r.json()["message"]


def test_malformed_requests_are_audited_and_hidden_from_anonymous(guard_server: Server) -> None:
    from mlflow_guard.store import GuardStore

    url = f"{guard_server.url}/api/2.0/mlflow/runs/log-batch"
    anon = requests.post(url, data=b"{not json", timeout=30)
    assert anon.status_code == 401
    bad = requests.post(url, data=b"{not json", auth=ALICE, timeout=30)
    assert bad.status_code == 400
    store = GuardStore(f"sqlite:///{guard_server.root}/guard.db")
    try:
        entry = {e.request_id: e for e in store.iter_audit()}[bad.json()["request_id"]]
    finally:
        store.dispose()
    assert (entry.user, entry.outcome) == ("alice", "deny")
    assert any("malformed JSON" in r for r in entry.reasons)
