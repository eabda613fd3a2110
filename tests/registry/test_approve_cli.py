"""``mlflow-guard approve``: a signed approval file that the approvals core verifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlflow_guard.cli import main
from mlflow_guard.core import approvals, keys, oms
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    approver = keys.generate()
    model_key = keys.generate()
    keys.write_keypair(tmp_path, "bob", approver)
    keys.write_keypair(tmp_path, "ci", model_key)
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x01" * 1000)
    oms.sign_model(model, keys.Signer(model_key))
    return {"root": tmp_path, "model": model}


def _from_dir(setup: dict[str, Path], out: Path) -> list[str]:
    root = setup["root"]
    return ["approve", "fraud", "3", "--to", "production", "--key", str(root / "bob.key"),
            "--model-dir", str(setup["model"]), "--public-key", str(root / "ci.pub"),
            "--out", str(out)]  # fmt: skip


def test_approve_from_verified_model_dir(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = setup["root"]
    out = root / "appr.json"
    rc = main([*_from_dir(setup, out), "--comment", "looks good", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    trust = TrustStore(
        [TrustedKey("bob", keys.load_public_key(root / "bob.pub"), frozenset({Purpose.APPROVAL}))]
    )
    a = approvals.verify_signed(out.read_bytes(), trust)
    assert (a.model, a.version, str(a.target), a.decision) == (
        "fraud",
        "3",
        "alias:production",
        "approve",
    )
    assert a.root_digest == report["root_digest"]
    assert a.comment == "looks good"


def test_approve_refuses_tampered_model(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = setup["root"]
    (setup["model"] / "weights.bin").write_bytes(b"\x02" * 1000)
    out = root / "appr.json"
    rc = main(_from_dir(setup, out))
    assert rc == 1
    assert "changed: weights.bin" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--root-digest", "xyz"], "not a hex sha256"),
        (["--root-digest", "ab" * 32, "--ttl", "forever"], "--ttl"),
        (["--root-digest", "ab" * 32, "--to", "bogus:x"], "bad promotion target"),
    ],
)
def test_approve_usage_errors(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    root = setup["root"]
    args = [
        "approve",
        "fraud",
        "3",
        "--to",
        "production",
        "--key",
        str(root / "bob.key"),
        "--out",
        str(root / "x.json"),
        *extra,
    ]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (root / "x.json").exists()
