"""The collector blueprint with Flask's test client (the live-server test is the server's)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask, g

from mlflow_guard.core.access import Principal
from mlflow_guard.feedback.http import PREFIX, create_blueprint
from mlflow_guard.server import routes
from tests.feedback.conftest import NOW, Env

NDJSON = "application/x-ndjson"


@pytest.fixture
def client(env: Env) -> Any:
    app = Flask("t")
    app.register_blueprint(create_blueprint(env.policy, env.store(), clock=lambda: NOW))

    @app.before_request
    def _auth() -> None:
        from flask import request

        user = request.headers.get("X-Test-User")
        if user:
            g.guard_principal = Principal(user)

    return app.test_client()


def test_routes_are_registered_with_decisions(client: Any) -> None:
    assert routes.spec_for("guard_feedback.ingest_feedback") == routes.AUTHENTICATED
    assert routes.spec_for("guard_feedback.release_feedback_quarantine") == routes.SERVER_ADMIN
    assert routes.spec_for("guard_feedback.list_feedback_quarantine") == routes.SERVER_ADMIN


def test_post_batch_accepts_and_quarantines(env: Env, client: Any) -> None:
    good = env.line(env.mobile, "ok")
    forged = json.loads(env.line(env.checkout))
    forged["timestamp"] += 1
    body = good + b"\n" + json.dumps(forged).encode() + b"\n"
    h = {"X-Test-User": "collector"}
    resp = client.post(PREFIX, data=body, content_type=NDJSON, headers=h)
    assert resp.status_code == 200
    out = resp.get_json()
    assert out["accepted"] == 1
    assert [r["reason"] for r in out["rejections"]] == ["bad-signature"]
    store = env.store()
    assert [r["raw"] for r in store.accepted_rows()] == [good]
    (q,) = store.quarantine_rows()
    assert q["raw"] == json.dumps(forged).encode()
    # replay of the accepted record
    again = client.post(PREFIX, data=good, content_type=NDJSON, headers=h).get_json()
    assert [r["reason"] for r in again["rejections"]] == ["replay"]
    assert len(store.accepted_rows()) == 1


def test_unauthenticated_wrong_type_and_oversized_are_refused(
    make_env: Any, env: Env, client: Any
) -> None:
    line = env.line(env.web)
    assert client.post(PREFIX, data=line, content_type=NDJSON).status_code == 401
    h = {"X-Test-User": "c"}
    assert client.post(PREFIX, data=line, content_type="text/html", headers=h).status_code == 415
    big = b"\n".join([line] * 10_001)
    resp = client.post(PREFIX, data=big, content_type=NDJSON, headers=h)
    assert resp.status_code == 413
    assert "limit is 10000" in resp.get_json()["error"]
    store = env.store()
    assert store.accepted_rows() == []
    assert store.quarantine_rows() == []


def test_quarantine_list_and_release_need_admin(env: Env, client: Any) -> None:
    stale = env.line(env.checkout, ts=NOW - 400)
    client.post(PREFIX, data=stale, content_type=NDJSON, headers={"X-Test-User": "c"})
    assert client.get(f"{PREFIX}/quarantine", headers={"X-Test-User": "bob"}).status_code == 403
    listed = client.get(f"{PREFIX}/quarantine", headers={"X-Test-User": "root-admin"}).get_json()
    (entry,) = listed["entries"]
    assert entry["reason"] == "stale"
    assert "raw" not in entry
    url = f"{PREFIX}/quarantine/release"
    assert (
        client.post(url, json={"qid": entry["qid"]}, headers={"X-Test-User": "bob"}).status_code
        == 403
    )
    resp = client.post(url, json={"qid": entry["qid"]}, headers={"X-Test-User": "root-admin"})
    assert resp.status_code == 409
    assert "fails re-verification" in resp.get_json()["error"]
    assert env.store().accepted_rows() == []
    assert env.store().quarantine_rows("quarantined")[0]["qid"] == entry["qid"]


def test_admin_release_moves_a_quota_entry_to_accepted(make_env: Any) -> None:
    env = make_env({"quota": {"records": 0}})
    app = Flask("t2")
    app.register_blueprint(
        create_blueprint(env.policy, env.store(), clock=lambda: NOW, register_routes=False,
                         principal=lambda: Principal("root-admin"))
    )  # fmt: skip
    client = app.test_client()
    line = env.line(env.web, "ok")
    out = client.post(PREFIX, data=line, content_type=NDJSON).get_json()
    assert [r["reason"] for r in out["rejections"]] == ["quota"]
    qid = out["rejections"][0]["qid"]
    resp = client.post(f"{PREFIX}/quarantine/release", json={"qid": qid})
    assert resp.status_code == 200
    store = env.store()
    assert [r["raw"] for r in store.accepted_rows()] == [line]
    (row,) = store.quarantine_rows("released")
    assert row["released_by"] == "root-admin"
    # releasing twice is refused
    assert client.post(f"{PREFIX}/quarantine/release", json={"qid": qid}).status_code == 404


def test_a_policy_function_uses_the_given_trust_store_once_per_policy(env: Env) -> None:
    """With ``trust_of`` (the server's policy watcher), the collector builds no trust store of
    its own: one per policy object, and a new policy gets a new one."""
    from mlflow_guard.core.policy import load_policy
    from mlflow_guard.core.trust import TrustStore

    current = [env.policy]
    given: list[tuple[object, TrustStore]] = []

    def trust_of(policy: Any) -> TrustStore:
        store = TrustStore.from_policy(policy)
        given.append((policy, store))
        return store

    app = Flask("t")
    bp = create_blueprint(
        lambda: current[0], env.store(), trust_of=trust_of, clock=lambda: NOW,
        principal=lambda: Principal("collector"), register_routes=False,
    )  # fmt: skip
    app.register_blueprint(bp)
    client = app.test_client()
    for i in range(2):
        resp = client.post(PREFIX, data=env.line(env.mobile, f"ok{i}"), content_type=NDJSON)
        assert resp.get_json()["accepted"] == 1
    assert [p for p, _ in given] == [env.policy]
    current[0] = load_policy(env.policy_path)  # a reload: another policy object
    resp = client.post(PREFIX, data=env.line(env.mobile, "ok2"), content_type=NDJSON)
    assert resp.get_json()["accepted"] == 1
    assert [p for p, _ in given] == [env.policy, current[0]]
