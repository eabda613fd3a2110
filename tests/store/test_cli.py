"""``mlflow-guard tokens`` and ``mlflow-guard audit`` against real databases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_guard.cli import main as cli
from mlflow_guard.core import audit
from mlflow_guard.store import GuardStore
from tests.conftest import KeyRing, PolicyWriter
from tests.store.conftest import event
from tests.store.test_store import sql


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_tokens_create_list_revoke(capsys: pytest.CaptureFixture[str], db_uri: str) -> None:
    rc, out, _ = run(
        capsys, "tokens", "create", "ci-bot", "--expires", "30d", "--description", "nightly",
        "--database-uri", db_uri, "--json",
    )  # fmt: skip
    assert rc == 0
    created = json.loads(out)
    secret, token_id = created["secret"], created["token_id"]
    store = GuardStore(db_uri)
    info = store.verify_token(secret)
    assert info is not None
    assert info.user == "ci-bot"
    assert info.description == "nightly"
    rc, out, _ = run(capsys, "tokens", "list", "--database-uri", db_uri, "--json")
    listed = json.loads(out)["tokens"]
    assert [t["token_id"] for t in listed] == [token_id]
    assert listed[0]["status"] == "active"
    assert secret not in out
    rc, out, _ = run(capsys, "tokens", "revoke", token_id, "--database-uri", db_uri)
    assert rc == 0
    assert "revoked" in out
    assert store.verify_token(secret) is None
    rc, out, _ = run(capsys, "tokens", "list", "--user", "ci-bot", "--database-uri", db_uri)
    assert "revoked" in out
    assert token_id in out
    rc, _, err = run(capsys, "tokens", "revoke", "feedfacefeedface", "--database-uri", db_uri)
    assert rc == 2
    assert "no token" in err
    rc, _, err = run(capsys, "tokens", "create", "x", "--expires", "soon", "--database-uri", db_uri)
    assert rc == 2
    assert "--expires" in err
    assert len(store.list_tokens()) == 1
    store.dispose()


def test_tokens_use_the_policy_database(
    capsys: pytest.CaptureFixture[str], write_policy: PolicyWriter, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path}/state.db"
    policy = write_policy(raw={"version": 1, "storage": {"database_uri": uri}})
    rc, out, _ = run(
        capsys, "tokens", "create", "alice", "--expires", "never", "--policy", str(policy)
    )
    assert rc == 0
    assert "expires:  never" in out
    assert [t.user for t in GuardStore(uri).list_tokens()] == ["alice"]


def _filled(db_uri: str, n: int = 8) -> GuardStore:
    store = GuardStore(db_uri)
    store.migrate()
    for i in range(1, n + 1):
        store.append_audit(event(i, outcome="deny" if i % 2 else "allow"))
    return store


def test_audit_verify_ok_then_names_the_tampered_entry(
    capsys: pytest.CaptureFixture[str], db_uri: str
) -> None:
    _filled(db_uri).dispose()
    rc, out, _ = run(capsys, "audit", "verify", "--database-uri", db_uri, "--json")
    assert rc == 0
    assert json.loads(out)["entries"] == 8
    assert json.loads(out)["ok"] is True
    sql(db_uri, "UPDATE guard_audit SET user_name = 'someone-else' WHERE seq = 5")
    rc, out, _ = run(capsys, "audit", "verify", "--database-uri", db_uri, "--json")
    assert rc == 1
    doc = json.loads(out)
    assert doc["ok"] is False
    assert doc["report"]["problem"]["kind"] == "modified"
    assert doc["report"]["problem"]["seq"] == 5
    rc, _, err = run(capsys, "audit", "verify", "--database-uri", db_uri)
    assert rc == 1
    assert "modified entry 5" in err
    assert "Next step" in err


def test_audit_checkpoints_need_the_audit_key(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    keyring: KeyRing,
    write_policy: PolicyWriter,
) -> None:
    uri = f"sqlite:///{tmp_path}/guard.db"
    _filled(uri).dispose()
    audit_pair, other = keyring["audit"], keyring.get("not-audit")
    rc, out, _ = run(
        capsys, "audit", "checkpoint", "--key", str(audit_pair.private), "--database-uri", uri
    )
    assert rc == 0
    assert "seq 8" in out
    rc, _, err = run(capsys, "audit", "verify", "--database-uri", uri)
    assert rc == 2
    assert "no audit key" in err
    rc, out, _ = run(
        capsys,
        "audit",
        "verify",
        "--database-uri",
        uri,
        "--public-key",
        str(audit_pair.public),
        "--json",
    )
    assert rc == 0
    assert json.loads(out)["checkpoints_verified"] == 1
    rc, _, err = run(
        capsys, "audit", "verify", "--database-uri", uri, "--public-key", str(other.public)
    )
    assert rc == 1
    assert "checkpoint" in err
    policy = write_policy(
        raw={
            "version": 1,
            "keys": [{"id": "srv", "public_key": str(audit_pair.public), "purposes": ["audit"]}],
            "storage": {"database_uri": uri, "audit_key": str(audit_pair.private)},
        }
    )
    rc, out, _ = run(capsys, "audit", "verify", "--policy", str(policy), "--json")
    assert rc == 0
    assert json.loads(out)["checkpoints_verified"] == 1


def test_export_jsonl_round_trips_and_verifies_offline(
    capsys: pytest.CaptureFixture[str], db_uri: str, keyring: KeyRing, tmp_path: Path
) -> None:
    store = _filled(db_uri, 12)
    store.write_checkpoint(keyring["audit"].signer)
    out_file = tmp_path / "audit.jsonl"
    rc, _, _ = run(
        capsys, "audit", "export", "--jsonl", "--out", str(out_file), "--database-uri", db_uri
    )
    assert rc == 0
    lines = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["entry"] * 12 + ["head", "checkpoint"]
    entries = [
        audit.AuditEntry.model_validate({k: v for k, v in x.items() if k != "kind"})
        for x in lines[:12]
    ]
    assert entries == list(store.iter_audit())
    rc, stdout, _ = run(capsys, "audit", "export", "--jsonl", "--database-uri", db_uri)
    assert stdout == out_file.read_text()
    pub = str(keyring["audit"].public)
    rc, out, _ = run(
        capsys, "audit", "verify", "--from-jsonl", str(out_file), "--public-key", pub, "--json"
    )
    assert rc == 0
    assert json.loads(out)["checkpoints_verified"] == 1
    # Swap entries 3 and 4 in the file: the offline check names entry 4 as out of order.
    raw = out_file.read_text().splitlines()
    raw[2], raw[3] = raw[3], raw[2]
    swapped = tmp_path / "swapped.jsonl"
    swapped.write_text("\n".join(raw) + "\n")
    rc, out, _ = run(
        capsys, "audit", "verify", "--from-jsonl", str(swapped), "--public-key", pub, "--json"
    )
    problem = json.loads(out)["report"]["problem"]
    assert rc == 1
    assert (problem["kind"], problem["seq"]) == ("reordered", 4)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"kind": "entry", "seq": "x"}\n')
    rc, _, err = run(capsys, "audit", "verify", "--from-jsonl", str(garbage))
    assert rc == 1
    assert "garbage.jsonl:1" in err
    store.dispose()


def test_console_script_exit_codes(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/guard.db"
    _filled(uri, 3).dispose()
    exe = [sys.executable, "-m", "mlflow_guard.cli"]
    ok = subprocess.run(
        [*exe, "audit", "verify", "--database-uri", uri], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    sql(uri, "DELETE FROM guard_audit WHERE seq = 2")
    bad = subprocess.run(
        [*exe, "audit", "verify", "--database-uri", uri], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "deleted entry 2" in bad.stderr
    unreachable = subprocess.run(
        [*exe, "audit", "verify", "--database-uri", "postgresql://postgres@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
    )
    assert unreachable.returncode == 3
    assert "127.0.0.1:1" in unreachable.stderr
