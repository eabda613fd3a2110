"""Signatures made by earlier releases (ours and model_signing 1.1.1) must keep verifying."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlflow_guard.core import errors, keys, oms
from mlflow_guard.core.trust import TrustStore

GOLDEN = Path(__file__).resolve().parent / "golden"
SIGS = sorted((GOLDEN / "sigs").glob("*.sig"))


def _trust() -> TrustStore:
    return TrustStore.single(keys.load_public_key(GOLDEN / "golden.pub"))


def test_corpus_present() -> None:
    assert len(SIGS) == 6
    assert not list(GOLDEN.rglob("*.key"))


@pytest.mark.parametrize("sig", SIGS, ids=[p.stem for p in SIGS])
def test_golden_signature_verifies(sig: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(GOLDEN / "model", model)
    res = oms.verify_model(model, _trust(), signature_path=sig)
    assert res.files == 4
    assert res.model_name == "model"
    (model / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(errors.ManifestMismatch) as info:
        oms.verify_model(model, _trust(), signature_path=sig)
    assert info.value.changed == ["weights.bin"]


@pytest.mark.parametrize(
    "sig", [p for p in SIGS if p.stem.startswith("guard-")], ids=lambda p: p.stem
)
def test_ours_still_verify_with_model_signing(sig: Path) -> None:
    from model_signing import verifying

    verifying.Config().use_elliptic_key_verifier(public_key=GOLDEN / "golden.pub").verify(
        GOLDEN / "model", sig
    )


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("guard-sha256-files", "ms-sha256-files"),
        ("guard-blake3-files", "ms-blake3-files"),
        ("guard-sha256-shards-1024", "ms-sha256-shards-1024"),
    ],
)
def test_same_root_digest_as_model_signing(ours: str, theirs: str) -> None:
    """Byte-for-byte the same manifest as the reference: same root digest."""
    a = oms.parse_bundle((GOLDEN / "sigs" / f"{ours}.sig").read_bytes())[2]
    b = oms.parse_bundle((GOLDEN / "sigs" / f"{theirs}.sig").read_bytes())[2]
    assert a.root_digest == b.root_digest
    assert a.resources == b.resources
