"""Ordinary MLflow workflows through guard with the real client, and what guard refuses."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.server._server import PASSWORDS, Server

pytestmark = pytest.mark.slow


def auth(user: str) -> tuple[str, str]:
    return (user, PASSWORDS[user])


def api(server: Server, method: str, path: str, user: str | None, **kw: Any) -> requests.Response:
    return requests.request(
        method, f"{server.url}{path}", auth=auth(user) if user else None, timeout=60, **kw
    )


@pytest.fixture(scope="module")
def alice_run(guard_server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Alice's experiment, run (params, metrics, artifact), logged model and model version."""
    import os

    import mlflow
    from sklearn.linear_model import LogisticRegression

    os.environ["MLFLOW_TRACKING_USERNAME"] = "alice"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = PASSWORDS["alice"]
    try:
        mlflow.set_tracking_uri(guard_server.url)
        mlflow.set_registry_uri(guard_server.url)
        exp_id = mlflow.create_experiment("alice-exp")
        art = tmp_path_factory.mktemp("art") / "notes.txt"
        art.write_text("hello guard\n")
        with mlflow.start_run(experiment_id=exp_id) as run:
            mlflow.log_param("c", 1.0)
            mlflow.log_metrics({"accuracy": 0.95, "loss": 0.1})
            mlflow.log_artifact(str(art))
            model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
            info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
        mv = mlflow.register_model(info.model_uri, "fraud-detector")
        client = mlflow.MlflowClient()
        runs = client.search_runs([exp_id])
        return {
            "exp_id": exp_id,
            "run_id": run.info.run_id,
            "model_id": info.model_id,
            "version": mv.version,
            "search": [r.info.run_id for r in runs],
        }
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
        os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
        mlflow.set_tracking_uri(None)


def test_allowed_workflow_works_and_binds_identity(
    guard_server: Server, alice_run: dict[str, Any]
) -> None:
    run_id = alice_run["run_id"]
    assert alice_run["search"] == [run_id]
    r = api(guard_server, "GET", "/api/2.0/mlflow/runs/get", "alice", params={"run_id": run_id})
    assert r.status_code == 200, r.text
    run = r.json()["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["mlflow_guard.user"] == "alice"
    assert tags["mlflow_guard.auth"] == "basic"
    assert run["info"]["user_id"] == "alice"
    assert {m["key"] for m in run["data"]["metrics"]} == {"accuracy", "loss"}
    mv = api(
        guard_server,
        "GET",
        "/api/2.0/mlflow/model-versions/get",
        "alice",
        params={"name": "fraud-detector", "version": alice_run["version"]},
    ).json()["model_version"]
    assert {t["key"]: t["value"] for t in mv["tags"]}["mlflow_guard.user"] == "alice"
    lm = api(
        guard_server, "GET", f"/api/2.0/mlflow/logged-models/{alice_run['model_id']}", "alice"
    ).json()["model"]
    assert {t["key"]: t["value"] for t in lm["info"]["tags"]}["mlflow_guard.user"] == "alice"


def test_artifact_download_and_upload_are_enforced_natively(
    guard_server: Server, alice_run: dict[str, Any]
) -> None:
    path = f"{alice_run['exp_id']}/{alice_run['run_id']}/artifacts/notes.txt"
    url = f"/api/2.0/mlflow-artifacts/artifacts/{path}"
    assert api(guard_server, "GET", url, "alice").text == "hello guard\n"
    assert api(guard_server, "GET", url, "bob").status_code == 200  # reviewer reads
    for user in (None, "mallory"):
        r = api(guard_server, "GET", url, user)
        assert r.status_code == (401 if user is None else 403), r.text
        assert "mlflow-guard:" in r.json()["message"]
    run_dir = f"{alice_run['exp_id']}/{alice_run['run_id']}/artifacts"
    up = f"/api/2.0/mlflow-artifacts/artifacts/{run_dir}/evil.txt"
    r = api(guard_server, "PUT", up, "bob", data=b"tampered")
    assert r.status_code == 403
    assert "may not log on experiment 'alice-exp'" in r.json()["message"]
    listing = api(
        guard_server,
        "GET",
        "/api/2.0/mlflow/artifacts/list",
        "alice",
        params={"run_id": alice_run["run_id"]},
    ).json()
    assert "evil.txt" not in {f["path"] for f in listing["files"]}
    assert api(guard_server, "PUT", up, "alice", data=b"ok").status_code == 200


def test_forbidden_actions_get_403_with_reason_and_change_nothing(
    guard_server: Server, alice_run: dict[str, Any]
) -> None:
    r = api(
        guard_server,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        "alice",
        json={"name": "bob-exp"},
    )
    assert r.status_code == 403
    body = r.json()
    assert body["error_code"] == "PERMISSION_DENIED"
    assert "alice may not log on experiment 'bob-exp'" in body["message"]
    assert body["request_id"]
    from tests.server.conftest import ADMIN

    r = requests.get(
        f"{guard_server.url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "bob-exp"},
        auth=ADMIN,
        timeout=30,
    )
    assert r.status_code == 404  # nothing was created
    r = api(
        guard_server,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        "alice",
        json={"name": "other-model"},
    )
    assert r.status_code == 403
    assert "register on model 'other-model'" in r.json()["message"]
    r = api(
        guard_server,
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        "alice",
        json={"name": "fraud-detector", "alias": "production", "version": alice_run["version"]},
    )
    assert r.status_code == 403
    assert "may not promote" in r.json()["message"]
    r = api(
        guard_server,
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        "bob",
        json={
            "run_id": alice_run["run_id"],
            "metrics": [{"key": "accuracy", "value": 1.0, "timestamp": 1, "step": 9}],
        },
    )
    assert r.status_code == 403
    hist = api(
        guard_server,
        "GET",
        "/api/2.0/mlflow/metrics/get-history",
        "alice",
        params={"run_id": alice_run["run_id"], "metric_key": "accuracy"},
    ).json()
    assert [m["value"] for m in hist["metrics"]] == [0.95]
    r = api(
        guard_server,
        "GET",
        "/api/2.0/mlflow/runs/get",
        "mallory",
        params={"run_id": alice_run["run_id"]},
    )
    assert r.status_code == 403
    assert "roles: none" in r.json()["message"]


def test_unauthenticated_is_401_except_health(
    guard_server: Server, alice_run: dict[str, Any]
) -> None:
    assert api(guard_server, "GET", "/health", None).status_code == 200
    for method, path in [
        ("GET", "/api/2.0/mlflow/experiments/search?max_results=5"),
        ("POST", "/api/2.0/mlflow/runs/create"),
        ("GET", "/ajax-api/2.0/mlflow/runs/get?run_id=" + alice_run["run_id"]),
        ("POST", "/graphql"),
        ("POST", "/v1/traces"),
        ("GET", "/api/2.0/mlflow-guard/whoami"),
    ]:
        r = api(guard_server, method, path, None)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Basic")
    bad = requests.get(
        f"{guard_server.url}/api/2.0/mlflow/experiments/search", auth=("alice", "wrong"), timeout=30
    )
    assert bad.status_code == 401
    assert "wrong user name or password" in bad.json()["message"]


def test_spoofed_user_id_is_ignored(guard_server: Server, alice_run: dict[str, Any]) -> None:
    r = api(
        guard_server,
        "POST",
        "/api/2.0/mlflow/runs/create",
        "alice",
        json={
            "experiment_id": alice_run["exp_id"],
            "user_id": "bob",
            "tags": [{"key": "mlflow.user", "value": "bob"}],
        },
    )
    assert r.status_code == 200, r.text
    run = r.json()["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert run["info"]["user_id"] == "alice"
    assert tags["mlflow.user"] == "alice"
    assert tags["mlflow_guard.user"] == "alice"


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/api/2.0/mlflow/runs/set-tag", {"key": "mlflow_guard.user", "value": "bob"}),
        ("/api/2.0/mlflow/runs/delete-tag", {"key": "mlflow_guard.user"}),
        ("/api/2.0/mlflow/runs/log-batch", {"tags": [{"key": "MLFLOW_GUARD.user", "value": "x"}]}),
        ("/api/2.0/mlflow/runs/create", {"tags": [{"key": "mlflow_guard.user", "value": "bob"}]}),
        (
            "/api/2.0/mlflow/registered-models/create",
            {"name": "fraud-x", "tags": [{"key": "mlflow_guard.approved", "value": "1"}]},
        ),
        (
            "/api/2.0/mlflow/model-versions/set-tag",
            {"name": "fraud-detector", "version": "1", "key": "mlflow_guard.user", "value": "bob"},
        ),
    ],
)
def test_guard_tag_writes_are_refused(
    guard_server: Server, alice_run: dict[str, Any], path: str, payload: dict[str, Any]
) -> None:
    body = {"run_id": alice_run["run_id"], "experiment_id": alice_run["exp_id"], **payload}
    r = api(guard_server, "POST", path, "alice", json=body)
    assert r.status_code == 403, r.text
    assert "server-only 'mlflow_guard.' namespace" in r.json()["message"]
    run = api(
        guard_server,
        "GET",
        "/api/2.0/mlflow/runs/get",
        "alice",
        params={"run_id": alice_run["run_id"]},
    ).json()["run"]
    assert {t["key"]: t["value"] for t in run["data"]["tags"]}["mlflow_guard.user"] == "alice"


def test_search_results_are_filtered(guard_server: Server, alice_run: dict[str, Any]) -> None:
    from tests.server.conftest import ADMIN

    requests.post(
        f"{guard_server.url}/api/2.0/mlflow/experiments/create",
        json={"name": "secret-exp"},
        auth=ADMIN,
        timeout=30,
    ).raise_for_status()
    names = {
        e["name"]
        for e in api(
            guard_server,
            "GET",
            "/api/2.0/mlflow/experiments/search",
            "alice",
            params={"max_results": 100},
        ).json()["experiments"]
    }
    assert "alice-exp" in names
    assert "secret-exp" not in names
    assert "Default" not in names
    names = {
        e["name"]
        for e in api(
            guard_server,
            "GET",
            "/api/2.0/mlflow/experiments/search",
            "bob",
            params={"max_results": 100},
        ).json()["experiments"]
    }
    assert {"alice-exp", "secret-exp"} <= names
    assert (
        api(
            guard_server,
            "GET",
            "/api/2.0/mlflow/experiments/search",
            "mallory",
            params={"max_results": 5},
        ).status_code
        == 403
    )
