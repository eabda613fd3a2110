"""``--gunicorn-opts``: the factory returns the Flask app and guard enforces in Flask alone,
including the artifact routes that FastAPI serves natively under uvicorn."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.server._server import PASSWORDS, Server, start_guard
from tests.server.conftest import ADMIN, create_users

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_guard(
        tmp_path_factory.mktemp("gunicorn"),
        workers=1,
        server_opts=("--gunicorn-opts", "--timeout 60"),
    )
    try:
        create_users(server.url)
        yield server
    finally:
        server.stop()


def test_gunicorn_enforces_flask_and_artifact_routes(gunicorn_server: Server) -> None:
    url = gunicorn_server.url
    assert "gunicorn" in gunicorn_server.log.read_text().lower()
    alice = ("alice", PASSWORDS["alice"])
    assert requests.get(f"{url}/api/2.0/mlflow/experiments/search", timeout=30).status_code == 401
    exp = requests.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": "alice-g"},
                        auth=alice, timeout=30).json()["experiment_id"]  # fmt: skip
    art = f"{url}/api/2.0/mlflow-artifacts/artifacts/{exp}/r/artifacts/a.txt"
    assert requests.put(art, data=b"g", auth=alice, timeout=30).status_code == 200
    assert requests.get(art, auth=alice, timeout=30).content == b"g"
    r = requests.get(art, auth=("mallory", PASSWORDS["mallory"]), timeout=30)
    assert r.status_code == 403
    assert "mlflow-guard:" in r.json()["message"]
    assert requests.get(art, timeout=30).status_code == 401
    r = requests.put(art, data=b"x", auth=("bob", PASSWORDS["bob"]), timeout=30)
    assert r.status_code == 403
    assert requests.get(art, auth=ADMIN, timeout=30).status_code == 200
