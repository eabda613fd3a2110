"""Registry gates and promotion approvals on a real guard server, with the real MLflow client.

Each denial is asserted with its reason and with the alias/stage/tag unchanged afterwards.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from mlflow.exceptions import MlflowException

from mlflow_guard.core import approvals, keys, oms, provenance
from tests.registry.conftest import Env, auth, client_as

pytestmark = pytest.mark.slow
API = "/api/2.0/mlflow-guard/promotions"
PROD = approvals.Target("alias", "production")


class _Evil:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo pwned",))


def add_provenance(d: Path, signer: keys.Signer) -> None:
    """Write an (unsigned) provenance attestation naming a commit and a dataset, then re-sign."""
    oms.sign_model(d, signer)
    _, _, manifest = oms.parse_bundle((d / oms.SIGNATURE_FILE).read_bytes())
    root = provenance.subject_digest(manifest.resources, manifest.serialization.method)
    st = provenance.build_statement(
        provenance.ProvenanceInput(
            model_name="model",
            root_digest=root,
            source=provenance.Source(repository="https://git.example/fraud", commit="c0ffee12"),
            datasets=(provenance.Dataset(path="data/train.csv", sha256="ab" * 32),),
        )
    )
    (d / provenance.PROVENANCE_FILE).write_bytes(provenance.unsigned(st))


def make_model(
    d: Path,
    signer: keys.Signer | None,
    *,
    evil: bool = False,
    lineage: bool = False,
    offset: float = 0.0,
) -> Path:
    d.mkdir(parents=True)
    (d / "MLmodel").write_text("flavors: {}\n")
    np.save(d / "weights.npy", np.arange(1000, dtype=np.float64) + offset)
    if evil:
        (d / "model.pkl").write_bytes(pickle.dumps(_Evil()))
    if lineage and signer is not None:
        add_provenance(d, signer)
    if signer is not None:
        oms.sign_model(d, signer)
    return d


def new_version(
    env: Env,
    client: Any,
    name: str,
    tmp: Path,
    *,
    signer: str | None = "ci",
    accuracy: float | None = 0.95,
    evil: bool = False,
    lineage: bool = False,
    offset: float = 0.0,
) -> tuple[str, str]:
    """Log a run with a (signed) model and register it; return (version, run_id).

    ``offset`` shifts the weights, so two versions can have different digests."""
    exp = client.get_experiment_by_name("registry-tests")
    exp_id = exp.experiment_id if exp else client.create_experiment("registry-tests")
    run = client.create_run(exp_id)
    if accuracy is not None:
        client.log_metric(run.info.run_id, "accuracy", accuracy)
    signing = env.signers[signer] if signer else None
    model = make_model(tmp / uuid.uuid4().hex, signing, evil=evil, lineage=lineage, offset=offset)
    client.log_artifacts(run.info.run_id, str(model), "model")
    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return str(mv.version), run.info.run_id


def aliases(client: Any, name: str) -> dict[str, str]:
    return {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}


def api(env: Env, user: str, verb: str, **body: Any) -> requests.Response:
    return requests.post(f"{env.url}{API}/{verb}", json=body, auth=auth(user), timeout=120)


def status(env: Env, user: str, name: str, version: str, target: str) -> dict[str, Any]:
    r = requests.get(
        f"{env.url}{API}/status",
        params={"name": name, "version": version, "target": target},
        auth=auth(user),
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def signed(env: Env, key: str, name: str, version: str, digest: str, **kw: Any) -> Any:
    target = kw.pop("target", PROD)
    return approvals.create_signed(name, version, target, digest, env.signers[key], **kw).to_json()


def expect(r: requests.Response, code: int, needle: str) -> None:
    assert r.status_code == code, r.text
    assert needle in r.text, r.text


def denied(exc: pytest.ExceptionInfo[MlflowException], *needles: str) -> None:
    text = str(exc.value)
    assert "PERMISSION_DENIED" in text or "403" in text, text
    for n in needles:
        assert n in text, f"{n!r} not in {text}"


def test_unsigned_model_is_not_registered(
    reg_env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    alice = client_as(reg_env, "alice", monkeypatch)
    with pytest.raises(MlflowException) as e:
        new_version(reg_env, alice, "fraud-unsigned", tmp_path, signer=None, evil=True)
    # every unmet requirement is listed, each with how to meet it
    denied(e, "registration gate", "unsigned", "MLFLOW_GUARD_SIGNING_KEY", "scan: model.pkl")
    assert alice.search_model_versions("name = 'fraud-unsigned'") == []


def test_untrusted_signing_key_is_not_registered(
    reg_env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    alice = client_as(reg_env, "alice", monkeypatch)
    with pytest.raises(MlflowException) as e:
        new_version(reg_env, alice, "fraud-rogue", tmp_path, signer="rogue")
    denied(e, "registration gate", "signature")
    assert alice.search_model_versions("name = 'fraud-rogue'") == []


def test_full_flow_then_tampering_blocks(
    reg_env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    alice = client_as(reg_env, "alice", monkeypatch)
    name = "fraud-flow"
    v, run_id = new_version(reg_env, alice, name, tmp_path)
    tags = alice.get_model_version(name, v).tags
    assert tags["mlflow_guard.signer_key_id"] == reg_env.signers["ci"].key_id
    assert tags["mlflow_guard.scan"] == "clean"
    assert tags["mlflow_guard.user"] == "alice"
    digest = tags["mlflow_guard.root_sha256"]

    with pytest.raises(MlflowException) as e:
        alice.set_registered_model_alias(name, "production", v)
    denied(e, "0 of 2 required approvals")
    assert aliases(alice, name) == {}

    r = api(reg_env, "alice", "request", name=name, version=v, target="alias:production")
    expect(r, 200, "pending")
    # alice (the run and version creator) holds no reviewer role: refused with the reason
    r = api(reg_env, "alice", "approve", name=name, version=v, target="alias:production")
    expect(r, 403, "may not approve")
    r = api(reg_env, "bob", "approve", name=name, version=v, target="alias:production")
    expect(r, 200, "counted")
    assert r.json()["promoted"] is False
    assert [a["approver"] for a in r.json()["status"]["counted"]] == ["bob"]
    # duplicate approval: refused, still one counted
    r = api(reg_env, "bob", "approve", name=name, version=v, target="alias:production")
    expect(r, 409, "counts once")
    # bob's signed approval is the same person: it does not count twice
    r = api(reg_env, "alice", "approve", envelope=signed(reg_env, "bob", name, v, digest))
    st = status(reg_env, "alice", name, v, "alias:production")
    assert [a["approver"] for a in st["status"]["counted"]] == ["bob"], st
    assert aliases(alice, name) == {}
    # carol's signed approval, submitted by alice: requirements met -> promoted exactly once
    r = api(reg_env, "alice", "approve", envelope=signed(reg_env, "carol", name, v, digest))
    expect(r, 200, "counted")
    assert r.json()["promoted"] is True
    assert aliases(alice, name) == {"production": v}
    st = status(reg_env, "bob", name, v, "alias:production")
    assert st["requests"][0]["state"] == "promoted"
    assert st["status"]["allowed"]
    assert st["status"]["gates"] == [
        {"metric": "accuracy", "expression": ">= 0.9", "value": 0.95, "passed": True}
    ]
    # the ordinary MLflow client call succeeds once requirements are met
    alice.set_registered_model_alias(name, "production", v)

    # tamper with the artifacts in the server's store: the next promotion is refused
    art = reg_env.root / "artifacts"
    weights = next(art.rglob(f"{run_id}/artifacts/model/weights.npy"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(MlflowException) as e:
        alice.set_registered_model_alias(name, "production", v)
    denied(e, "artifacts changed since they were signed", "weights.npy")
    st = status(reg_env, "bob", name, v, "alias:production")
    assert not st["status"]["allowed"]
    assert aliases(alice, name) == {"production": v}


def test_denied_approvals(reg_env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bob = client_as(reg_env, "bob", monkeypatch)
    name = "fraud-denials"
    v, _ = new_version(reg_env, bob, name, tmp_path)
    digest = bob.get_model_version(name, v).tags["mlflow_guard.root_sha256"]
    cases = [
        # self-approval: bob created the run and the version
        (api(reg_env, "bob", "approve", name=name, version=v, target="alias:production"),
         403, "separation of duties"),
        # expired approval
        (api(reg_env, "alice", "approve", envelope=signed(
            reg_env, "carol", name, v, digest, ttl=timedelta(days=1),
            now=datetime.now(UTC) - timedelta(days=3))), 403, "expired"),
        # approval for another digest
        (api(reg_env, "alice", "approve", envelope=signed(reg_env, "carol", name, v, "0" * 64)),
         403, "approves root digest"),
        # revoked approver key
        (api(reg_env, "alice", "approve", envelope=signed(reg_env, "dave", name, v, digest)),
         403, "revoked"),
        # a user without the approve action
        (api(reg_env, "mallory", "approve", name=name, version=v, target="alias:production"),
         403, "may not approve"),
    ]  # fmt: skip
    for r, code, needle in cases:
        expect(r, code, needle)
    # approval for another target: recorded for stage:Production, does not count for the alias
    stage = approvals.Target("stage", "Production")
    env = signed(reg_env, "carol", name, v, digest, target=stage)
    r = api(reg_env, "alice", "approve", envelope=env)
    assert r.status_code == 200, r.text
    st = status(reg_env, "alice", name, v, "alias:production")
    assert st["status"]["counted"] == []
    assert not st["status"]["allowed"]
    with pytest.raises(MlflowException) as e:
        bob.set_registered_model_alias(name, "production", v)
    denied(e, "0 of 2 required approvals")
    assert aliases(bob, name) == {}


def test_missing_metric_and_rejection(
    reg_env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    alice = client_as(reg_env, "alice", monkeypatch)
    name = "fraud-gates"
    v, _ = new_version(reg_env, alice, name, tmp_path, accuracy=None)
    for who in ("bob", "carol"):
        r = api(reg_env, who, "approve", name=name, version=v, target="alias:production")
        assert r.status_code == 200, r.text
    with pytest.raises(MlflowException) as e:
        alice.set_registered_model_alias(name, "production", v)
    denied(e, "accuracy = missing (needs >= 0.9): FAIL")
    assert aliases(alice, name) == {}
    # rejection outstanding blocks the protected tag (1 approval needed, bob approved)
    assert api(reg_env, "carol", "reject", name=name, version=v, target="tag:release",
               comment="bias audit pending").status_code == 200  # fmt: skip
    assert (
        api(reg_env, "bob", "approve", name=name, version=v, target="tag:release").status_code
        == 200
    )
    with pytest.raises(MlflowException) as e:
        alice.set_model_version_tag(name, v, "release", "yes")
    denied(e, "rejected by carol", "bias audit pending")
    assert "release" not in alice.get_model_version(name, v).tags
    assert (
        api(reg_env, "carol", "withdraw", name=name, version=v, target="tag:release").status_code
        == 200
    )
    alice.set_model_version_tag(name, v, "release", "yes")
    assert alice.get_model_version(name, v).tags["release"] == "yes"


def test_bypass_attempts(reg_env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    alice = client_as(reg_env, "alice", monkeypatch)
    name = "fraud-bypass"
    v1, _ = new_version(reg_env, alice, name, tmp_path)
    for who in ("bob", "carol"):
        assert (
            api(
                reg_env, who, "approve", name=name, version=v1, target="alias:production"
            ).status_code
            == 200
        )
    alice.set_registered_model_alias(name, "production", v1)
    v2, _ = new_version(reg_env, alice, name, tmp_path)
    url = reg_env.url
    # raw REST on /ajax-api and /api: moving the alias to the unapproved v2
    for prefix in ("/ajax-api/2.0", "/api/2.0"):
        body = {"name": name, "alias": "production", "version": v2}
        r = requests.post(
            f"{url}{prefix}/mlflow/registered-models/alias",
            auth=auth("alice"),
            json=body,
            timeout=60,
        )
        expect(r, 403, "required approvals")
    # a look-alike spelling of the protected alias is protected too
    with pytest.raises(MlflowException) as e:
        alice.set_registered_model_alias(name, "PRODUCTION", v2)
    denied(e, "alias:PRODUCTION", "required approvals")
    # legacy stage transition
    with pytest.raises(MlflowException) as e:
        alice.transition_model_version_stage(name, v2, "Production")
    denied(e, "stage:Production", "required approvals")
    # protected tag writes (version and registered model)
    with pytest.raises(MlflowException) as e:
        alice.set_model_version_tag(name, v2, "release", "yes")
    denied(e, "tag:release")
    with pytest.raises(MlflowException) as e:
        alice.set_registered_model_tag(name, "release", "yes")
    denied(e, "needs a server admin")
    # deleting the protected alias needs an admin; deleting / renaming its holder is refused
    with pytest.raises(MlflowException) as e:
        alice.delete_registered_model_alias(name, "production")
    denied(e, "needs a server admin")
    admin = client_as(reg_env, "admin", monkeypatch)
    with pytest.raises(MlflowException) as e:
        admin.rename_registered_model(name, "fraud-renamed")
    denied(e, "holds protected alias:production")
    with pytest.raises(MlflowException) as e:
        admin.delete_model_version(name, v1)
    denied(e, "holds protected alias:production")
    # copy_model_version of the unapproved v2 into another model: a new, unpromoted version
    # (the copy does not take the source's alias; promoting the copy needs its own approvals)
    alice = client_as(reg_env, "alice", monkeypatch)
    copy = alice.copy_model_version(f"models:/{name}/{v2}", "fraud-bypass-copy")
    with pytest.raises(MlflowException) as e:
        alice.set_registered_model_alias("fraud-bypass-copy", "production", copy.version)
    denied(e, "required approvals")
    # GraphQL: server-admin only
    query = "{ mlflowSearchModelVersions(input: {}) { modelVersions { name } } }"
    r = requests.post(f"{url}/graphql", auth=auth("alice"), timeout=60, json={"query": query})
    assert r.status_code == 403, r.text
    assert aliases(alice, name) == {"production": v1}
    # protected tag at creation, update / tag delete on a holder: refused for non-admins
    run_id = alice.get_model_version(name, v1).run_id
    src = alice.get_model_version(name, v1).source
    with pytest.raises(MlflowException) as e:
        alice.create_model_version(name, src, run_id=run_id, tags={"release": "yes"})
    denied(e, "cannot be set at creation")
    with pytest.raises(MlflowException) as e:
        alice.update_model_version(name, v1, description="swap")
    denied(e, "needs a server admin")
    assert alice.get_model_version(name, v1).description in ("", None)
    assert len(alice.search_model_versions(f"name = '{name}'")) == 2
    mv2 = alice.get_model_version(name, v2)
    assert mv2.current_stage == "None"
    assert "release" not in mv2.tags


def _cli(env: Env, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "MLFLOW_TRACKING_URI": env.url, "MLFLOW_TRACKING_USERNAME": user,
         "MLFLOW_TRACKING_PASSWORD": auth(user)[1]}  # fmt: skip
    e.pop("MLFLOW_TRACKING_TOKEN", None)
    cmd = [sys.executable, "-m", "mlflow_guard.cli", *args]
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=300, check=False)


def test_cli_promote(reg_env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    alice = client_as(reg_env, "alice", monkeypatch)
    name = "fraud-cli"
    v, _ = new_version(reg_env, alice, name, tmp_path)
    r = _cli(reg_env, "alice", "promote", "request", name, v, "--to", "production")
    assert r.returncode == 0, r.stderr
    assert "0 of 2 required approvals" in r.stdout
    r = _cli(reg_env, "bob", "promote", "approve", name, v, "--to", "production")
    assert r.returncode == 0, r.stderr
    r = _cli(reg_env, "bob", "promote", "approve", name, v, "--to", "production")
    assert r.returncode == 1
    assert "counts once" in r.stderr + r.stdout
    key = tmp_path / "carol.key"
    key.write_bytes(keys.private_pem(reg_env.signers["carol"].private_key))
    digest = alice.get_model_version(name, v).tags["mlflow_guard.root_sha256"]
    out = tmp_path / "carol-approval.json"
    r = _cli(reg_env, "carol", "approve", name, v, "--to", "production", "--key", str(key),
             "--root-digest", digest, "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = _cli(reg_env, "alice", "promote", "approve", "--file", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["promoted"] is True
    assert aliases(alice, name) == {"production": v}
    r = _cli(reg_env, "alice", "promote", "list", "--state", "all")
    assert f"{name} v{v} -> alias:production  promoted" in r.stdout


def test_copy_model_version(reg_env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``copy_model_version`` works through guard: the copy is verified again, carries the
    copier's identity, cannot forge server-only tags and is refused once the source's artifacts
    no longer match their signature."""
    alice = client_as(reg_env, "alice", monkeypatch)
    name, dst = "fraud-copy-src", "fraud-copy-dst"
    v, run_id = new_version(reg_env, alice, name, tmp_path)
    src = alice.get_model_version(name, v)

    mallory = client_as(reg_env, "mallory", monkeypatch)
    copied = mallory.copy_model_version(f"models:/{name}/{v}", dst)
    got = mallory.get_model_version(dst, copied.version)
    assert got.source == f"models:/{name}/{v}"
    assert got.run_id == run_id
    assert got.tags["mlflow_guard.user"] == "mallory"  # the copier, not the source's author
    assert got.tags["mlflow_guard.root_sha256"] == src.tags["mlflow_guard.root_sha256"]
    alice = client_as(reg_env, "alice", monkeypatch)

    def versions() -> int:
        return len(alice.search_model_versions(f"name = '{dst}'"))

    before = versions()
    url = f"{reg_env.url}/api/2.0/mlflow/model-versions/create"
    base = {"name": dst, "source": f"models:/{name}/{v}", "run_id": run_id}
    forged = [{"key": k, "value": val} for k, val in src.tags.items()]
    forged = [t if t["key"] != "mlflow_guard.user" else {**t, "value": "bob"} for t in forged]
    cases = [
        # a server-only tag whose value differs from the source version's: forged
        ({**base, "tags": forged}, 403, "mlflow_guard.user"),
        ({**base, "tags": [{"key": "mlflow_guard.approved", "value": "yes"}]}, 403, "server-only"),
        # aliases, "latest" and missing versions are not copy sources
        ({**base, "source": f"models:/{name}@champion"}, 400, "is not accepted"),
        ({**base, "source": f"models:/{name}/latest"}, 400, "is not accepted"),
        ({**base, "source": f"models:/{name}/999"}, 404, "not found"),
        # the run id must be one the caller may read; MLflow also checks it matches
        ({**base, "run_id": "0" * 32}, 404, "not found"),
    ]
    for body, code, needle in cases:
        r = requests.post(url, json=body, auth=auth("alice"), timeout=120)
        expect(r, code, needle)
    assert versions() == before

    # a protected tag on the source is not copied into a new version
    assert api(reg_env, "bob", "approve", name=name, version=v, target="tag:release").ok
    alice.set_model_version_tag(name, v, "release", "yes")
    with pytest.raises(MlflowException) as e:
        alice.copy_model_version(f"models:/{name}/{v}", dst)
    assert "cannot be set at creation" in str(e.value)

    # tamper with the source's artifacts: the copy is verified again and refused
    art = reg_env.root / "artifacts"
    weights = next(art.rglob(f"{run_id}/artifacts/model/weights.npy"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    client_as(reg_env, "admin", monkeypatch).delete_model_version_tag(name, v, "release")
    alice = client_as(reg_env, "alice", monkeypatch)
    with pytest.raises(MlflowException) as e:
        alice.copy_model_version(f"models:/{name}/{v}", dst)
    assert "does not match its signature" in str(e.value)
    assert "weights.npy" in str(e.value) or "artifacts/model" in str(e.value)
    assert versions() == before


def test_copy_of_a_version_whose_artifacts_were_swapped_is_refused(
    reg_env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The server binds a copy to the digest its source was registered with: version 2's
    artifacts replaced by version 1's (validly signed by the same key) are not copied."""
    alice = client_as(reg_env, "alice", monkeypatch)
    name, dst = "fraud-copy-swap", "fraud-copy-swap-dst"
    _, run1 = new_version(reg_env, alice, name, tmp_path)
    v2, run2 = new_version(reg_env, alice, name, tmp_path, offset=1.0)
    recorded = alice.get_model_version(name, v2).tags["mlflow_guard.root_sha256"]
    art = reg_env.root / "artifacts"
    one = next(art.rglob(f"{run1}/artifacts/model"))
    two = next(art.rglob(f"{run2}/artifacts/model"))
    shutil.rmtree(two)
    shutil.copytree(one, two)
    with pytest.raises(MlflowException) as e:
        alice.copy_model_version(f"models:/{name}/{v2}", dst)
    assert "not the ones that version was registered with" in str(e.value)
    assert recorded[:16] in str(e.value)
    assert not alice.search_model_versions(f"name = '{dst}'")


def test_key_usage_through_the_server(
    reg_env: Env,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``mlflow-guard keys usage`` against a guard server: the signer and the authenticated
    registrant the server recorded, judged against the server's policy."""
    from mlflow_guard.cli import run

    alice = client_as(reg_env, "alice", monkeypatch)
    name = "fraud-key-usage"
    v, _ = new_version(reg_env, alice, name, tmp_path, signer="ci")
    client_as(reg_env, "admin", monkeypatch)  # the command runs with the admin's credentials
    pub = reg_env.root / "keys" / "ci.pub"
    rc = run(["keys", "usage", str(pub), "--tracking-uri", reg_env.url,
              "--policy", str(reg_env.root / "guard.yaml"), "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, out
    mine = [x for x in out["versions"] if x["name"] == name]
    assert [(x["version"], x["signer"], x["status"], x["created_by"]) for x in mine] == [
        (v, "ci", "trusted", "alice")
    ]
