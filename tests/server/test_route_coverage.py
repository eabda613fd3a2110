"""Every route of the running app resolves to a guard decision, and the live server applies it.

An MLflow upgrade that adds a route fails here (unmapped → no decision) instead of opening a
hole; the live part proves the decision is enforced on each route, Flask and FastAPI-native.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.server._server import PASSWORDS, POLICY, Server

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    d = tmp_path_factory.mktemp("routes")
    (d / "guard.yaml").write_text(POLICY.format(guard_db=f"sqlite:///{d}/guard.db"))
    env = {
        **os.environ,
        "MLFLOW_GUARD_POLICY": str(d / "guard.yaml"),
        "MLFLOW_GUARD_USERS_DATABASE_URI": f"sqlite:///{d}/users.db",
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{d}/mlflow.db",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.server._dump_routes"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: list[dict[str, Any]] = json.loads(proc.stdout)
    return out


def test_every_route_has_a_decision(routes: list[dict[str, Any]]) -> None:
    assert len(routes) > 400
    assert {r["layer"] for r in routes} == {"flask", "fastapi"}
    unmapped = sorted(
        {f"{r['method']} {r['rule']} ({r['endpoint']})" for r in routes if not r["resolver"]}
    )
    assert unmapped == [], "routes without a guard decision:\n" + "\n".join(unmapped)
    by_endpoint = {r["endpoint"]: r["resolver"] for r in routes}
    assert by_endpoint["fastapi:upload_artifact"] == "artifact_path"
    assert by_endpoint["fastapi:download_artifact"] == "artifact_path"
    assert by_endpoint["fastapi:export_traces"] == "otel"
    assert by_endpoint["_graphql"] == "server"
    assert by_endpoint["mlflow_guard_api.whoami"] == "authenticated"
    assert by_endpoint.get("guard_feedback.ingest_feedback") in (None, "authenticated")


def test_live_server_enforces_every_route(
    guard_server: Server, routes: list[dict[str, Any]]
) -> None:
    anon, mallory = requests.Session(), requests.Session()
    mallory.auth = ("mallory", PASSWORDS["mallory"])
    leaks = []
    for r in routes:
        if r["resolver"] == "public":
            continue
        url = f"{guard_server.url}{r['path']}"
        a = anon.request(r["method"], url, json={}, timeout=30)
        if a.status_code != 401:
            leaks.append(f"anonymous {r['method']} {r['path']} -> {a.status_code}")
        if r["resolver"] == "authenticated":
            continue
        m = mallory.request(r["method"], url, json={}, timeout=30)
        try:
            guarded = m.json()["message"].startswith("mlflow-guard:")
        except (ValueError, KeyError, TypeError):
            guarded = False
        if m.status_code not in (400, 403, 404) or not guarded:
            leaks.append(f"mallory {r['method']} {r['path']} -> {m.status_code} {m.text[:80]}")
    assert leaks == [], "\n".join(leaks)


def test_unmapped_route_is_denied() -> None:
    from mlflow_guard.server.routes import spec_for

    assert spec_for("_some_route_added_by_a_future_mlflow") is None
    assert spec_for(None) is None
