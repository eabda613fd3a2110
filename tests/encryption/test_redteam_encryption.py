"""Red-team attacks on encrypted artifacts by someone who can write the store but has no KEK.

Real ``guard+file`` stores written by the real MLflow client, and the envelope API directly:
ciphertext swapped between runs or files, the location binding stripped, a cut at a segment
boundary. Each is refused with the reason, leaves no plaintext and changes nothing stored.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from mlflow_guard.encryption import envelope
from mlflow_guard.encryption.artifact_repo import location
from mlflow_guard.encryption.envelope import DecryptionError
from mlflow_guard.encryption.kek import ENV_KEK, LocalKeysetKEK

SEG = 1024 * 1024
RUN_A = "a" * 32
RUN_B = "b" * 32


@pytest.fixture
def kek(tmp_path: Path) -> LocalKeysetKEK:
    return LocalKeysetKEK.generate(tmp_path / "kek.json")


@pytest.fixture
def store(tmp_path: Path, kek: LocalKeysetKEK, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(ENV_KEK, str(tmp_path / "kek.json"))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    root = tmp_path / "artifacts"
    yield root
    mlflow.set_tracking_uri(None)


def _runs(root: Path, *verdicts: str) -> list[str]:
    """One run per verdict, each with ``verdict.txt`` and ``notes.txt``."""
    exp = mlflow.create_experiment("redteam", artifact_location=f"guard+file://{root}")
    ids = []
    for text in verdicts:
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_text(text, "verdict.txt")
            mlflow.log_text(f"notes of {text}", "notes.txt")
        ids.append(run.info.run_id)
    return ids


def _file(root: Path, run_id: str, name: str) -> Path:
    return next(p for p in root.rglob(name) if run_id in p.parts)


def test_ciphertext_swapped_between_runs_is_refused(store: Path, tmp_path: Path) -> None:
    good, evil = _runs(store, "approved", "rejected")
    target = _file(store, good, "verdict.txt")
    target.write_bytes(_file(store, evil, "verdict.txt").read_bytes())
    planted = target.read_bytes()
    repo = get_artifact_repository(mlflow.get_run(good).info.artifact_uri)
    (tmp_path / "dl").mkdir()
    with pytest.raises(MlflowException, match="moved here from another artifact path"):
        repo.download_artifacts("verdict.txt", str(tmp_path / "dl"))
    assert not (tmp_path / "dl" / "verdict.txt").exists()
    assert target.read_bytes() == planted
    # The untouched run still reads.
    assert mlflow.artifacts.load_text(f"runs:/{evil}/verdict.txt") == "rejected"


def test_ciphertext_swapped_between_files_of_one_run_is_refused(
    store: Path, tmp_path: Path
) -> None:
    (run_id,) = _runs(store, "approved")
    a, b = _file(store, run_id, "verdict.txt"), _file(store, run_id, "notes.txt")
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    repo = get_artifact_repository(mlflow.get_run(run_id).info.artifact_uri)
    for name in ("verdict.txt", "notes.txt"):
        (tmp_path / name).mkdir()
        with pytest.raises(MlflowException, match="failed authentication"):
            repo.download_artifacts(name, str(tmp_path / name))
        assert not (tmp_path / name / name).exists()
    assert (a.read_bytes(), b.read_bytes()) == (b_bytes, a_bytes)


def test_stripping_the_binding_from_the_header_is_refused(
    tmp_path: Path, kek: LocalKeysetKEK
) -> None:
    plain = tmp_path / "p.bin"
    plain.write_bytes(os.urandom(5000))
    enc = tmp_path / "c.bin"
    at = f"{RUN_A}/artifacts/model/model.pkl"
    envelope.encrypt_file(plain, enc, kek, location=at)
    with enc.open("rb") as f:
        header = envelope.read_header(f)
        body = f.read()
    assert header.bound
    unbound = envelope.Header(header.alg, header.kek_key_id, header.wrapped_dek, bound=False)
    enc.write_bytes(unbound.encode() + body)
    for loc in (None, at):
        with pytest.raises(DecryptionError, match="failed authentication"):
            envelope.decrypt_file(enc, tmp_path / "out.bin", kek, location=loc)
    assert not (tmp_path / "out.bin").exists()


def test_bound_ciphertext_needs_its_location(tmp_path: Path, kek: LocalKeysetKEK) -> None:
    plain = tmp_path / "p.bin"
    plain.write_bytes(b"weights")
    enc = tmp_path / "c.bin"
    envelope.encrypt_file(plain, enc, kek, location=f"{RUN_A}/artifacts/w.bin")
    with pytest.raises(DecryptionError, match="bound to its artifact location"):
        envelope.decrypt_file(enc, tmp_path / "out.bin", kek)
    with pytest.raises(DecryptionError, match="another artifact path"):
        envelope.decrypt_file(enc, tmp_path / "out.bin", kek, location=f"{RUN_B}/artifacts/w.bin")
    assert not (tmp_path / "out.bin").exists()
    envelope.decrypt_file(enc, tmp_path / "out.bin", kek, location=f"{RUN_A}/artifacts/w.bin")
    assert (tmp_path / "out.bin").read_bytes() == b"weights"


def test_location_survives_moving_the_store_but_not_the_run() -> None:
    here = location(f"guard+file:///data/mlflow/1/{RUN_A}/artifacts/model", "model.pkl")
    moved = location(f"guard+s3://bucket/prefix/1/{RUN_A}/artifacts", "model/model.pkl")
    assert here == moved == f"{RUN_A}/artifacts/model/model.pkl"
    assert location(f"guard+file:///data/1/{RUN_B}/artifacts", "model/model.pkl") != here
    # Dot segments cannot reach another run's location.
    dotted = location(f"guard+file:///data/1/{RUN_B}/artifacts", f"../../{RUN_A}/artifacts/x")
    assert dotted == f"{RUN_A}/artifacts/x"
    logged = location(f"guard+file:///d/1/models/m-{'c' * 32}/artifacts", "MLmodel")
    assert logged == f"m-{'c' * 32}/artifacts/MLmodel"


def test_truncation_at_a_segment_boundary_is_refused(tmp_path: Path, kek: LocalKeysetKEK) -> None:
    plain = tmp_path / "p.bin"
    plain.write_bytes(os.urandom(3 * SEG))
    enc = tmp_path / "c.bin"
    envelope.encrypt_file(plain, enc, kek, location="x")
    data = enc.read_bytes()
    with enc.open("rb") as f:
        envelope.read_header(f)
        start = f.tell()
    (n,) = struct.unpack(">I", data[16:20])
    assert start == 20 + n
    seg_ct = (len(data) - start) // 3  # close to one ciphertext segment
    for cut in (start, start + seg_ct, len(data) - seg_ct, len(data) - 1):
        enc.write_bytes(data[:cut])
        with pytest.raises(DecryptionError):
            envelope.decrypt_file(enc, tmp_path / "out.bin", kek, location="x")
        assert not (tmp_path / "out.bin").exists()


def test_unbound_ciphertext_of_earlier_versions_still_reads(
    tmp_path: Path, kek: LocalKeysetKEK
) -> None:
    plain = tmp_path / "p.bin"
    plain.write_bytes(b"legacy")
    enc = tmp_path / "c.bin"
    envelope.encrypt_file(plain, enc, kek)
    with enc.open("rb") as f:
        raw = f.read()
    assert b'"bound"' not in raw[: 20 + struct.unpack(">I", raw[16:20])[0]]
    envelope.decrypt_file(enc, tmp_path / "out.bin", kek, location="anything")
    assert (tmp_path / "out.bin").read_bytes() == b"legacy"
    assert json.loads(raw[20 : 20 + struct.unpack(">I", raw[16:20])[0]])["alg"] == envelope.ALG


def test_rotation_keeps_the_binding(tmp_path: Path, kek: LocalKeysetKEK) -> None:
    plain = tmp_path / "p.bin"
    plain.write_bytes(b"model bytes")
    enc = tmp_path / "c.bin"
    at = f"{RUN_A}/artifacts/model.pkl"
    envelope.encrypt_file(plain, enc, kek, location=at)
    kek.add_primary()
    assert envelope.rewrap(enc, kek)
    with pytest.raises(DecryptionError, match="another artifact path"):
        envelope.decrypt_file(enc, tmp_path / "o.bin", kek, location=f"{RUN_B}/artifacts/m.pkl")
    envelope.decrypt_file(enc, tmp_path / "o.bin", kek, location=at)
    assert (tmp_path / "o.bin").read_bytes() == b"model bytes"
