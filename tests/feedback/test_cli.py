"""``mlflow-guard feedback`` and ``dvc-guard feedback-check`` end to end (in-process CLIs)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mlflow_guard.cli import run
from mlflow_guard.core import intoto, keys
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.feedback.attest import PREDICATE_TYPE, file_sha256
from tests.feedback.conftest import Env


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    rc = run(list(args))
    out = capsys.readouterr().out
    return rc, json.loads(out) if out.strip().startswith("{") else {"text": out}


@pytest.fixture
def batch(env: Env) -> tuple[Path, list[bytes]]:
    now = time.time()
    good = [env.line(env.checkout, "ok", ts=now), env.line(env.web, "bad", ts=now)]
    rec = json.loads(env.line(env.mobile, "ok", ts=now))
    rec["payload"]["label"] = "forged"
    lines = [*good, json.dumps(rec).encode(), good[0]]
    path = env.root / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, lines


def test_ingest_attest_list_show_release(
    env: Env, batch: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, lines = batch
    key = env.root / "data.key"
    key.write_bytes(keys.private_pem(env.kp.admin_ds))
    rc, out = _cli(
        capsys, "feedback", "ingest", str(path), "--into", str(env.into),
        "--policy", str(env.policy_path), "--db", env.db, "--key", str(key), "--json",
    )  # fmt: skip
    assert rc == 1
    assert out["accepted"] == 2
    assert [(r["line"], r["reason"]) for r in out["rejections"]] == [  # type: ignore[index]
        (3, "bad-signature"),
        (4, "replay"),
    ]
    assert env.into.read_bytes() == lines[0] + b"\n" + lines[1] + b"\n"

    # the feedback-batch attestation names the ids per source and the file digest
    att = Path(str(out["attestation"]))
    st, signer = intoto.verify_attestation(
        att.read_bytes(), TrustStore.from_policy(env.policy), Purpose.DATASET, PREDICATE_TYPE
    )
    assert signer.name == "data"
    assert st.subject[0].digest == {"sha256": file_sha256(env.into)}
    assert st.predicate["records"] == {
        "checkout": [json.loads(lines[0])["id"]],
        "web": [json.loads(lines[1])["id"]],
    }

    rc, listed = _cli(capsys, "feedback", "quarantine", "list", "--into", str(env.into), "--json")
    assert rc == 0
    entries = listed["entries"]
    assert [e["reason"] for e in entries] == ["bad-signature", "replay"]  # type: ignore[union-attr,index]
    forged_qid = entries[0]["qid"]  # type: ignore[index]

    assert (
        run(["feedback", "quarantine", "show", forged_qid[:8], "--into", str(env.into), "--raw"])
        == 0
    )
    assert capsys.readouterr().out.encode() == lines[2]

    # release: refused without admin, refused on re-verification, nothing changed
    before = env.into.read_bytes()
    base = ["feedback", "quarantine", "release", forged_qid, "--into", str(env.into),
            "--policy", str(env.policy_path), "--db", env.db]  # fmt: skip
    assert run(base) == 1
    assert "no user was given" in capsys.readouterr().err
    assert run([*base, "--as", "bob"]) == 1
    assert "may not release" in capsys.readouterr().err
    assert run([*base, "--as", "root-admin"]) == 1
    assert "fails re-verification" in capsys.readouterr().err
    assert env.into.read_bytes() == before
    assert {e.status for e in env.qfile.entries()} == {"quarantined"}


def test_ingest_with_wrong_purpose_key_is_refused_before_anything(
    env: Env, batch: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = batch
    key = env.root / "checkout.key"
    key.write_bytes(keys.private_pem(env.kp.ed))
    rc = run(["feedback", "ingest", str(path), "--into", str(env.into),
              "--policy", str(env.policy_path), "--db", env.db, "--key", str(key)])  # fmt: skip
    assert rc == 1
    assert "not for 'dataset'" in capsys.readouterr().err
    assert not env.into.exists()
    assert not env.qfile.path.exists()


def test_feedback_check_hook_names_the_edited_line(
    env: Env, batch: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    from dvc_hooks.cli import main as dvc_guard

    subprocess.run(["git", "init", "-q", str(env.root)], check=True)
    path, _ = batch
    assert run(["feedback", "ingest", str(path), "--into", str(env.into),
                "--policy", str(env.policy_path), "--db", env.db]) == 1  # fmt: skip
    capsys.readouterr()
    args = ["feedback-check", "data/feedback.jsonl.dvc", "--repo", str(env.root),
            "--policy", str(env.policy_path)]  # fmt: skip
    assert dvc_guard(args) == 0
    assert "1 file(s) verified" in capsys.readouterr().out

    lines = env.into.read_bytes().splitlines()
    edited = lines[1].replace(b'"label":"bad"', b'"label":"good"')
    assert edited != lines[1]
    env.into.write_bytes(b"\n".join([lines[0], edited, lines[0]]) + b"\n")
    assert dvc_guard(args) == 1
    err = capsys.readouterr().err
    assert "data/feedback.jsonl:2: bad-signature" in err
    assert "data/feedback.jsonl:3: replay" in err
    # a file outside feedback.datasets is not this hook's business unless asked
    other = env.root / "other.jsonl"
    other.write_bytes(b"not json\n")
    assert dvc_guard(["feedback-check", "other.jsonl", "--repo", str(env.root),
                      "--policy", str(env.policy_path)]) == 0  # fmt: skip
    assert dvc_guard(["feedback-check", "other.jsonl", "--any-file", "--repo", str(env.root),
                      "--policy", str(env.policy_path)]) == 1  # fmt: skip
    assert "other.jsonl:1: malformed" in capsys.readouterr().err


@pytest.mark.slow
def test_ingest_into_a_dvc_output_resigns_its_manifest(
    make_env: Callable[..., Env], capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from dvc_hooks.cli import main as dvc_guard

    env = make_env()
    pol = env.policy_path.read_text().replace(
        "version: 1\n", "version: 1\ndatasets: {signers: [data]}\n"
    )
    env.policy_path.write_text(pol)
    subprocess.run(["git", "init", "-q", str(env.root)], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=env.root, check=True)
    key = env.root / "data.key"
    key.write_bytes(keys.private_pem(env.kp.admin_ds))
    now = time.time()
    for i in range(2):
        path = env.root / f"in{i}.jsonl"
        path.write_bytes(env.line(env.checkout, str(i), ts=now) + b"\n")
        rc, out = _cli(
            capsys, "feedback", "ingest", str(path), "--into", str(env.into), "--dvc",
            "--policy", str(env.policy_path), "--db", env.db, "--key", str(key), "--json",
        )  # fmt: skip
        assert rc == 0, out
        assert out["dvc_signature"] == str(env.root / "data" / "feedback.jsonl.dvc.sig")
    args = ["verify", "data/feedback.jsonl.dvc", "--repo", str(env.root),
            "--policy", str(env.policy_path)]  # fmt: skip
    assert dvc_guard(args) == 0
    capsys.readouterr()
    with env.into.open("ab") as f:
        f.write(env.line(env.checkout, "sneaked-in", ts=now) + b"\n")
    assert dvc_guard(args) == 1
