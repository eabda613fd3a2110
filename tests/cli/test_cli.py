"""The ``mlflow-guard`` CLI: exit codes 0/1/2/3, ``--json`` output, keys/policy/sign/verify."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlflow_guard.cli import run
from mlflow_guard.core import keys, oms
from tests.conftest import PASSPHRASE, PASSPHRASE_ENV, KeyPair, ModelFactory, PolicyWriter, snapshot

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "guard.yaml"
MLFLOW_GUARD = str(Path(sys.executable).with_name("mlflow-guard"))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = cli(capsys, *argv, "--json")
    doc = json.loads(out)
    assert doc["ok"] is (code == 0)
    if code:
        assert doc["exit_code"] == code
        assert doc["error"]
        assert doc["summary"]
    return code, doc


# ------------------------------------------------------------------------------------ keys


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
def test_keys_generate(algorithm: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "k"
    code, doc = cli_json(
        capsys,
        "keys",
        "generate",
        "--purpose",
        "dataset",
        "--out",
        str(out),
        "--algorithm",
        algorithm,
    )
    assert code == 0
    priv, pub = Path(doc["private_key"]), Path(doc["public_key"])
    assert (priv.name, pub.name) == ("dataset.key", "dataset.pub")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert doc["key_id"] == keys.key_id(keys.load_public_key(pub))
    assert doc["encrypted"] is False
    assert doc["algorithm"] == algorithm
    assert doc["purpose"] == "dataset"
    before = snapshot(out)
    code, doc = cli_json(capsys, "keys", "generate", "--purpose", "dataset", "--out", str(out))
    assert code == 2
    assert doc["error"] == "KeyMaterialError"
    assert "refusing to overwrite" in doc["summary"]
    assert snapshot(out) == before
    code, doc = cli_json(capsys, "keys", "id", str(pub))
    assert code == 0
    assert doc["key_id"] == keys.key_id(keys.load_public_key(pub))


def test_keys_generate_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(
        capsys, "keys", "generate", "--purpose", "model", "--out", str(tmp_path), "--name", "ci"
    )
    assert code == 0
    assert "mode 0600" in out
    assert "purposes: [model]" in out
    assert "BEGIN" not in out  # key material is never printed


def test_keys_generate_passphrase_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "k"
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    args = (
        "keys",
        "generate",
        "--purpose",
        "model",
        "--out",
        str(out),
        "--passphrase-env",
        PASSPHRASE_ENV,
    )
    code, doc = cli_json(capsys, *args)
    assert code == 2
    assert doc["error"] == "KeyMaterialError"
    assert f"${PASSPHRASE_ENV} is not set" in doc["summary"]
    assert not out.exists()
    monkeypatch.setenv(PASSPHRASE_ENV, "")
    code, doc = cli_json(capsys, *args)
    assert code == 2
    assert "is empty" in doc["summary"]
    assert not out.exists()
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    code, doc = cli_json(capsys, *args)
    assert code == 0
    assert doc["encrypted"] is True
    priv = Path(doc["private_key"])
    assert b"ENCRYPTED PRIVATE KEY" in priv.read_bytes()
    assert PASSPHRASE.encode() not in priv.read_bytes()
    keys.load_private_key(priv, PASSPHRASE.encode())


def test_keys_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli(capsys, "keys")[0] == 2
    code, _, err = cli(capsys, "keys", "generate", "--purpose", "nope", "--out", str(tmp_path))
    assert code == 2
    assert "invalid choice" in err
    assert "Next step" in err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ policy


def test_policy_check_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = cli_json(capsys, "policy", "check", str(EXAMPLE))
    assert code == 0
    assert doc["policy"] == str(EXAMPLE)
    assert doc["keys"] >= 3
    code, out, _ = cli(capsys, "policy", "check", "--policy", str(EXAMPLE))
    assert code == 0
    assert out.startswith(f"{EXAMPLE}: OK")


def test_policy_check_errors(
    capsys: pytest.CaptureFixture[str], write_policy: PolicyWriter
) -> None:
    bad = write_policy(raw={"version": 1, "keys": [], "rolse": {}})
    code, doc = cli_json(capsys, "policy", "check", str(bad))
    assert code == 2
    assert doc["error"] == "PolicyError"
    assert doc["details"] == [
        f"{bad}: rolse: unknown field (not part of policy version 1; check the spelling)"
    ]
    code, _, err = cli(capsys, "policy", "check", str(bad))
    assert code == 2
    assert f"{bad}: rolse: unknown field" in err
    assert "Next step:" in err


def test_policy_lookup_order_cli(
    capsys: pytest.CaptureFixture[str],
    clean_env: Path,
    write_policy: PolicyWriter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, doc = cli_json(capsys, "policy", "check")
    assert code == 2
    assert doc["summary"] == "no policy found"
    (clean_env / "guard.yaml").write_text("version: 1\n")
    assert cli_json(capsys, "policy", "check")[1]["policy"] == "guard.yaml"
    env_policy = write_policy(raw={"version": 1})
    monkeypatch.setenv("MLFLOW_GUARD_POLICY", str(env_policy))
    assert cli_json(capsys, "policy", "check")[1]["policy"] == str(env_policy)
    explicit = write_policy(raw={"version": 1})
    assert cli_json(capsys, "policy", "check", "--policy", str(explicit))[1]["policy"] == str(
        explicit
    )


def test_policy_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "policy", "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "keys" in schema["properties"]
    assert cli(capsys, "policy")[0] == 2


# ------------------------------------------------------------------------------------ sign / verify


def test_sign_verify_json(
    capsys: pytest.CaptureFixture[str],
    make_model: ModelFactory,
    model_key: KeyPair,
    write_policy: PolicyWriter,
) -> None:
    model = make_model()
    code, doc = cli_json(capsys, "sign", str(model), "--key", str(model_key.private))
    assert code == 0
    assert doc["signature"] == str(model / "model.sig")
    assert doc["key_id"] == model_key.key_id
    assert doc["files"] == 5
    assert (doc["hash_type"], doc["method"]) == ("sha256", "files")
    policy = write_policy({"ci": (model_key, ["model"])})
    code, ver = cli_json(capsys, "verify", str(model), "--policy", str(policy))
    assert code == 0
    assert ver["root_digest"] == doc["root_digest"]
    assert (ver["signer"], ver["key_id"]) == ("ci", model_key.key_id)
    code, out, _ = cli(capsys, "verify", str(model), "--public-key", str(model_key.public))
    assert code == 0
    assert model_key.key_id in out
    assert f"sha256:{doc['root_digest']}" in out


def test_sign_options(
    capsys: pytest.CaptureFixture[str], make_model: ModelFactory, model_key: KeyPair, tmp_path: Path
) -> None:
    model = make_model()
    sig = tmp_path / "out.sig"
    code, doc = cli_json(
        capsys,
        "sign",
        str(model),
        "--key",
        str(model_key.private),
        "--hash",
        "sha256",
        "--shards",
        "--shard-size",
        "1024",
        "--ignore",
        "conda.yaml",
        "--signature",
        str(sig),
        "--workers",
        "2",
    )
    assert code == 0
    assert (doc["hash_type"], doc["method"], doc["files"]) == ("sha256", "shards", 4)
    assert not (model / "model.sig").exists()
    (model / "conda.yaml").write_text("ignored")
    code, ver = cli_json(
        capsys, "verify", str(model), "--public-key", str(model_key.public), "--signature", str(sig)
    )
    assert code == 0
    assert ver["method"] == "shards"


def test_verify_failure_text_lists_files(
    capsys: pytest.CaptureFixture[str], make_model: ModelFactory, model_key: KeyPair
) -> None:
    model = make_model()
    oms.sign_model(model, model_key.signer)
    (model / "model.pkl").write_bytes(b"evil")
    (model / "new.py").write_text("import os")
    (model / "conda.yaml").unlink()
    code, out, err = cli(capsys, "verify", str(model), "--public-key", str(model_key.public))
    assert code == 1
    assert out == ""
    for line in ("removed: conda.yaml", "added: new.py", "changed: model.pkl", "Next step:"):
        assert line in err


def test_sign_wrong_passphrase_writes_nothing(
    capsys: pytest.CaptureFixture[str],
    make_model: ModelFactory,
    keyring: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = keyring.get("cli-locked", passphrase=PASSPHRASE)
    model = make_model()
    before = snapshot(model)
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    code, doc = cli_json(
        capsys, "sign", str(model), "--key", str(pair.private), "--passphrase-env", PASSPHRASE_ENV
    )
    assert code == 2
    assert doc["error"] == "KeyMaterialError"
    assert "wrong passphrase" in doc["summary"]
    assert snapshot(model) == before
    code, doc = cli_json(capsys, "sign", str(model), "--key", str(pair.private))
    assert code == 2
    assert "no passphrase was given" in doc["summary"]
    assert snapshot(model) == before
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    code, _ = cli_json(
        capsys, "sign", str(model), "--key", str(pair.private), "--passphrase-env", PASSPHRASE_ENV
    )
    assert code == 0


def test_sign_symlink_and_bad_dir(
    capsys: pytest.CaptureFixture[str], make_model: ModelFactory, model_key: KeyPair, tmp_path: Path
) -> None:
    model = make_model()
    (model / "escape").symlink_to("/etc/passwd")
    before = snapshot(model)
    code, doc = cli_json(capsys, "sign", str(model), "--key", str(model_key.private))
    assert code == 1
    assert doc["error"] == "UnsafePath"
    assert "refusing symlink escape" in doc["summary"]
    assert snapshot(model) == before
    code, doc = cli_json(capsys, "sign", str(tmp_path / "nope"), "--key", str(model_key.private))
    assert code == 2
    assert "is not a directory" in doc["summary"]
    code, doc = cli_json(
        capsys, "verify", str(tmp_path / "nope"), "--public-key", str(model_key.public)
    )
    assert code == 2
    assert "is not a directory" in doc["summary"]


def test_verify_usage_errors(
    capsys: pytest.CaptureFixture[str],
    make_model: ModelFactory,
    model_key: KeyPair,
    clean_env: Path,
) -> None:
    model = make_model()
    oms.sign_model(model, model_key.signer)
    code, _, err = cli(capsys, "verify", str(model), "--policy", "p.yaml", "--public-key", "k.pub")
    assert code == 2
    assert "not allowed with argument" in err
    code, doc = cli_json(capsys, "verify", str(model))
    assert code == 2
    assert doc["error"] == "PolicyError"
    assert doc["summary"] == "no policy found"
    assert cli(capsys, "verify")[0] == 2
    assert cli(capsys)[0] == 2
    assert cli(capsys, "no-such-command")[0] == 2


def test_internal_error_exits_3(
    capsys: pytest.CaptureFixture[str],
    make_model: ModelFactory,
    model_key: KeyPair,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = make_model()
    oms.sign_model(model, model_key.signer)

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(oms, "verify_model", boom)
    code, out, err = cli(
        capsys, "verify", str(model), "--public-key", str(model_key.public), "--json"
    )
    assert code == 3
    doc = json.loads(out)
    assert (doc["ok"], doc["error"], doc["summary"], doc["exit_code"]) == (
        False,
        "RuntimeError",
        "disk on fire",
        3,
    )
    assert "this is a bug" in doc["hint"]
    assert "internal error: RuntimeError: disk on fire" in err
    assert "this is a bug" in err


def test_real_entry_point(make_model: ModelFactory, model_key: KeyPair) -> None:
    """The installed console script, not just ``run``: exit codes survive the process boundary."""
    model = make_model()
    sign = subprocess.run(
        [MLFLOW_GUARD, "sign", str(model), "--key", str(model_key.private), "--json"],
        capture_output=True,
        text=True,
    )
    assert sign.returncode == 0, sign.stderr
    (model / "model.pkl").write_bytes(b"x")
    verify = subprocess.run(
        [MLFLOW_GUARD, "verify", str(model), "--public-key", str(model_key.public), "--json"],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 1
    assert json.loads(verify.stdout)["changed"] == ["model.pkl"]
    help_ = subprocess.run([MLFLOW_GUARD, "--help"], capture_output=True, text=True)
    assert help_.returncode == 0
    for cmd in ("keys", "policy", "sign", "verify"):
        assert cmd in help_.stdout
    usage = subprocess.run([MLFLOW_GUARD, "sign"], capture_output=True, text=True)
    assert usage.returncode == 2


def test_usage_error_with_json_is_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = cli(capsys, "sign", str(tmp_path), "--json")
    assert code == 2
    doc = json.loads(out)
    assert (doc["ok"], doc["error"], doc["exit_code"]) == (False, "UsageError", 2)
    assert "--key" in doc["summary"]
    assert "required" in err
    code, out, _ = cli(capsys, "verify", "--bogus", "--json")
    assert code == 2
    assert json.loads(out)["error"] == "UsageError"
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    assert "usage:" in out


def test_keys_generate_passphrase_prompt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prompt (terminal input replaced by canned answers): must match and not be empty."""
    from mlflow_guard.cli import _common

    answers: list[str] = []
    monkeypatch.setattr(_common.getpass, "getpass", lambda prompt="": answers.pop(0))
    out = tmp_path / "k"
    args = ("keys", "generate", "--purpose", "model", "--out", str(out), "--passphrase-prompt")
    answers[:] = ["one", "two"]
    code, doc = cli_json(capsys, *args)
    assert (code, doc["summary"]) == (2, "passphrases do not match")
    answers[:] = [""]
    code, doc = cli_json(capsys, *args)
    assert (code, doc["summary"]) == (2, "the passphrase is empty")
    assert not out.exists()
    answers[:] = [PASSPHRASE, PASSPHRASE]
    code, doc = cli_json(capsys, *args)
    assert code == 0
    assert doc["encrypted"] is True
    keys.load_private_key(Path(doc["private_key"]), PASSPHRASE.encode())
