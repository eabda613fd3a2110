"""KEK rotation never trusts the header's ``kek_key_id``: the wrapped data key says which key.

An attacker who can write the artifact store but holds no KEK edits a container's header so it
names the primary key. Rotation that believed the header skipped the file and then retired the
key that really wrapped it: the artifact could never be decrypted again. Real ``guard+file``
stores written by the real MLflow client, a real Tink keyset, real ``mlflow-guard kek`` runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from tink.proto import tink_pb2

from mlflow_guard.cli import main
from mlflow_guard.encryption import envelope
from mlflow_guard.encryption.envelope import DecryptionError
from mlflow_guard.encryption.kek import ENV_KEK, LocalKeysetKEK


@pytest.fixture
def kek_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "kek.json"
    LocalKeysetKEK.generate(p)
    monkeypatch.setenv(ENV_KEK, str(p))
    return p


@pytest.fixture
def store(tmp_path: Path, kek_path: Path) -> Iterator[Path]:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield tmp_path / "artifacts"
    mlflow.set_tracking_uri(None)


def _log(store: Path, **texts: str) -> str:
    exp = mlflow.create_experiment(uuid.uuid4().hex, artifact_location=f"guard+file://{store}")
    with mlflow.start_run(experiment_id=exp) as run:
        for name, text in texts.items():
            mlflow.log_text(text, name.replace("__", "."))
    return str(run.info.run_id)


def _file(store: Path, run_id: str, name: str) -> Path:
    return next(p for p in store.rglob(name) if run_id in p.parts)


def _set_header_key(path: Path, key_id: int) -> None:
    """What the attacker does: rewrite ``kek_key_id`` in the header, nothing else."""
    with path.open("rb") as f:
        h = envelope.read_header(f)
        body = f.read()
    path.write_bytes(envelope.Header(h.alg, key_id, h.wrapped_dek, h.bound).encode() + body)


def _header_key(path: Path) -> int:
    with path.open("rb") as f:
        return envelope.read_header(f).kek_key_id


def _keyset_ids(kek_path: Path) -> set[int]:
    return set(LocalKeysetKEK(kek_path).key_ids)


def test_rewrap_ignores_a_header_naming_the_primary(store: Path, kek_path: Path) -> None:
    """The failing case before the fix: the lie made ``rewrap`` skip, ``retire`` destroyed it."""
    run = _log(store, verdict__txt="approved", notes__txt="keep me")
    victim, honest = _file(store, run, "verdict.txt"), _file(store, run, "notes.txt")
    kek = LocalKeysetKEK(kek_path)
    old = kek.primary_id
    new = kek.add_primary()  # rotation step 1
    _set_header_key(victim, new)  # the attacker, who sees `new` in any re-wrapped header
    assert envelope.inspect(victim).actual_key_id == old
    assert envelope.inspect(victim).header_lies
    assert envelope.rewrap(victim, kek)  # re-wrapped, not skipped on the header's word
    assert envelope.rewrap(honest, kek)
    assert not envelope.rewrap(victim, kek)
    kek.retire({old})  # rotation step 3
    assert _keyset_ids(kek_path) == {new}
    info = envelope.inspect(victim)
    assert (info.header_key_id, info.actual_key_id) == (new, new)
    assert mlflow.artifacts.load_text(f"runs:/{run}/verdict.txt") == "approved"
    assert mlflow.artifacts.load_text(f"runs:/{run}/notes.txt") == "keep me"


def test_kek_rotate_and_status_name_a_lying_header(
    store: Path, kek_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _log(store, verdict__txt="approved", notes__txt="fine")
    k1 = LocalKeysetKEK(kek_path).primary_id
    stale = LocalKeysetKEK(kek_path)  # a writer that loaded the keyset before the rotation
    assert main(["kek", "rotate", str(store), "--keep-old", "--json"]) == 0
    k2 = json.loads(capsys.readouterr().out)["new_primary_key_id"]
    # The stale writer stores one more artifact under k1; the attacker makes it claim k2.
    late = _file(store, run, "notes.txt").parent / "late.txt"
    src = store.parent / "late-plain.txt"
    src.write_text("written late")
    envelope.encrypt_file(src, late, stale, location=f"{run}/artifacts/late.txt")
    _set_header_key(late, k2)

    assert main(["kek", "status", str(store), "--json"]) == 1
    st = json.loads(capsys.readouterr().out)
    assert st["artifacts_by_key"] == {str(k2): 2, str(k1): 1}
    assert st["header_mismatch"] == [{"path": str(late), "header_key_id": k2, "actual_key_id": k1}]
    assert main(["kek", "status", str(store)]) == 1
    err = capsys.readouterr().err
    assert f"HEADER LIES: {late}: header names KEK key {k2}, data key wrapped by {k1}" in err

    assert main(["kek", "rotate", str(store)]) == 1
    out, err = capsys.readouterr()
    assert f"HEADER LIES: {late}: header names KEK key {k2}, data key wrapped by {k1}" in err
    assert "edited them" in err
    assert "re-wrapped 3 artifacts" in out
    (k3,) = _keyset_ids(kek_path)
    assert k3 not in (k1, k2)
    assert envelope.inspect(late).header_key_id == envelope.inspect(late).actual_key_id == k3
    assert mlflow.artifacts.load_text(f"runs:/{run}/late.txt") == "written late"
    assert mlflow.artifacts.load_text(f"runs:/{run}/verdict.txt") == "approved"
    assert main(["kek", "status", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["artifacts_by_key"] == {str(k3): 3}


def test_unwrappable_data_key_keeps_every_old_key(
    store: Path, kek_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrapped key whose Tink prefix was edited fails to unwrap: nothing is retired."""
    run = _log(store, verdict__txt="approved", notes__txt="fine")
    victim = _file(store, run, "verdict.txt")
    original = victim.read_bytes()
    k1 = LocalKeysetKEK(kek_path).primary_id
    with victim.open("rb") as f:
        h = envelope.read_header(f)
        body = f.read()
    ek = tink_pb2.EncryptedKeyset()
    ek.ParseFromString(h.wrapped_dek)
    ct = bytes(ek.encrypted_keyset)
    ek.encrypted_keyset = ct[:1] + ((k1 ^ 0x1234) & 0xFFFFFFFF).to_bytes(4, "big") + ct[5:]
    forged = envelope.Header(h.alg, k1, ek.SerializeToString(), h.bound).encode() + body
    victim.write_bytes(forged)

    assert main(["kek", "rotate", str(store), "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] is False
    assert list(rep["failed"]) == [str(victim)]
    assert "which the configured KEK does not hold" in rep["failed"][str(victim)]
    assert rep["retired"] == []
    assert rep["kept"] == [k1]
    assert _keyset_ids(kek_path) == {k1, rep["new_primary_key_id"]}
    assert victim.read_bytes() == forged  # nothing changed in the file
    # Because k1 was kept, restoring the file from a copy makes it readable again.
    victim.write_bytes(original)
    assert mlflow.artifacts.load_text(f"runs:/{run}/verdict.txt") == "approved"
    assert mlflow.artifacts.load_text(f"runs:/{run}/notes.txt") == "fine"
    assert main(["kek", "rotate", str(store)]) == 0
    capsys.readouterr()
    assert mlflow.artifacts.load_text(f"runs:/{run}/verdict.txt") == "approved"


def test_hidden_artifact_is_rotated_too(
    store: Path, kek_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dot-files were skipped by rotation, so their key was retired under them."""
    run = _log(store, __env="TOKEN=abc", model__txt="m")
    hidden = _file(store, run, ".env")
    assert envelope.is_encrypted(hidden)
    k1 = LocalKeysetKEK(kek_path).primary_id
    assert main(["kek", "rotate", str(store)]) == 0
    capsys.readouterr()
    assert k1 not in _keyset_ids(kek_path)
    assert envelope.inspect(hidden).actual_key_id in _keyset_ids(kek_path)
    assert mlflow.artifacts.load_text(f"runs:/{run}/.env") == "TOKEN=abc"


def test_special_file_in_the_store_does_not_hang_rotation(store: Path, kek_path: Path) -> None:
    """A FIFO planted in the store blocked rotation forever (it was opened to read magic)."""
    run = _log(store, model__txt="m")
    fifo = _file(store, run, "model.txt").parent / "pipe"
    os.mkfifo(fifo)
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow_guard.cli", "kek", "rotate", str(store)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, ENV_KEK: str(kek_path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"skipped (not a regular file): {fifo}" in proc.stderr
    assert "re-wrapped 1 artifacts" in proc.stdout
    assert mlflow.artifacts.load_text(f"runs:/{run}/model.txt") == "m"


def test_rewrap_with_a_foreign_kek_names_the_real_wrapping_key(
    tmp_path: Path, kek_path: Path
) -> None:
    kek = LocalKeysetKEK(kek_path)
    plain = tmp_path / "p.bin"
    plain.write_bytes(b"weights")
    enc = tmp_path / "c.bin"
    envelope.encrypt_file(plain, enc, kek, location="r/artifacts/w")
    other = LocalKeysetKEK.generate(tmp_path / "other.json")
    with pytest.raises(DecryptionError, match=f"wrapped by KEK key {kek.primary_id}, which"):
        envelope.rewrap(enc, other)
