"""OMS v1.0 test vectors (ossf/model-signing-spec): parsing, key hints, refused key material."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from mlflow_guard.core import errors, oms
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustStore
from tests.conftest import KeyPair

DATA = Path(__file__).resolve().parents[1] / "data" / "oms-v1.0"
VECTORS = DATA / "test-vectors" / "v1.0"
VALID = sorted((VECTORS / "valid").glob("*.bundle.json"))
INVALID = sorted(VECTORS.glob("invalid*/*.bundle.json"))
KEY_HINT = "e8450dec4eb99dae995da9af1bc2cc9f76ed669ee2e744f57abba763df3e3f8e"


def test_vectors_are_present() -> None:
    assert [p.name for p in VALID] == [
        "certificate.bundle.json",
        "key.bundle.json",
        "sigstore.bundle.json",
    ]
    assert len(INVALID) == 5
    assert (DATA / "LICENSE").is_file()
    assert "Apache" in (DATA / "README.md").read_text()


@pytest.mark.parametrize("path", VALID, ids=[p.name for p in VALID])
def test_valid_vectors_parse(path: Path) -> None:
    bundle, payload, manifest = oms.parse_bundle(path.read_bytes(), source=path.name)
    assert bundle.media_type == oms.BUNDLE_MEDIA_TYPE
    assert json.loads(payload)["predicateType"] == oms.PREDICATE_TYPE
    assert manifest.serialization.method == "files"
    assert manifest.serialization.hash_type == "sha256"
    assert set(manifest.resources) == {"signme-1", "signme-2"}
    assert "ignore-me" in manifest.serialization.ignore_paths
    assert len(manifest.root_digest) == 64


def test_key_vector_hint_is_read() -> None:
    _, _, manifest = oms.parse_bundle((VECTORS / "valid" / "key.bundle.json").read_bytes())
    assert manifest.key_hint == KEY_HINT


def test_key_vector_untrusted_hint_is_refused(model_key: KeyPair) -> None:
    trust = TrustStore.single(model_key.signer.public_key)
    with pytest.raises(errors.KeyNotTrusted, match="is not in the trust store"):
        oms.verify_bundle((VECTORS / "valid" / "key.bundle.json").read_bytes(), trust)


@pytest.mark.parametrize(
    ("name", "material"),
    [("certificate.bundle.json", "x509CertificateChain"), ("sigstore.bundle.json", "certificate")],
)
def test_certificate_and_sigstore_vectors_are_not_key_signatures(
    name: str, material: str, model_key: KeyPair
) -> None:
    trust = TrustStore.single(model_key.signer.public_key, [Purpose.MODEL])
    with pytest.raises(errors.KeyNotTrusted) as info:
        oms.verify_bundle((VECTORS / "valid" / name).read_bytes(), trust, source=name)
    assert f"is signed with {material}" in info.value.summary
    assert "not a public key" in info.value.summary
    assert "sign with a key listed in the policy" in info.value.hint


EXPECTED_INVALID: dict[str, tuple[str, ...]] = {
    "empty.bundle.json": ("empty.bundle.json is empty",),
    "missing-envelope.bundle.json": ("not a Sigstore bundle v0.3", "dsseEnvelope: Field required"),
    "missing-tlog-entries.bundle.json": (
        "not a Sigstore bundle v0.3",
        "verificationMaterial.tlogEntries: Field required",
    ),
    "missing-verification-material.bundle.json": (
        "not a Sigstore bundle v0.3",
        "verificationMaterial: Field required",
    ),
    "wrong-predicate.bundle.json": (
        "wrong predicate type 'https://example.com/wrong-predicate/v1.0'",
        f"expected '{oms.PREDICATE_TYPE}'",
    ),
}


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_vectors_are_rejected_with_a_clear_message(path: Path) -> None:
    with pytest.raises(errors.SignatureInvalid) as info:
        oms.parse_bundle(path.read_bytes(), source=path.name)
    text = info.value.diagnostics()
    for part in EXPECTED_INVALID[path.name]:
        assert part in text
    assert "Next step:" in text


def _schema_check(instance: Any, schema: dict[str, Any]) -> None:
    """Also validate with ``jsonschema`` when it is installed (the structural checks run anyway)."""
    if importlib.util.find_spec("jsonschema") is None:
        return
    import jsonschema

    jsonschema.Draft202012Validator(schema).validate(instance)


def test_our_files_bundle_matches_the_oms_schemas(model_key: KeyPair, tmp_path: Path) -> None:
    """Our own files-method bundle has every field the OMS schemas require, and no others."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"w")
    oms.sign_model(tmp_path / "m", model_key.signer)
    bundle = json.loads((tmp_path / "m" / oms.SIGNATURE_FILE).read_bytes())
    _, payload, _ = oms.parse_bundle(json.dumps(bundle).encode())
    statement = json.loads(payload)
    predicate_schema = json.loads((DATA / "schemas" / "v1.0" / "predicate.schema.json").read_text())
    pred = statement["predicate"]
    assert set(pred) == set(predicate_schema["required"])
    ser_schema = predicate_schema["$defs"]["serialization"]
    assert set(ser_schema["required"]) <= set(pred["serialization"])
    assert set(pred["serialization"]) <= set(ser_schema["properties"])
    assert "shard_size" not in pred["serialization"]
    for r in pred["resources"]:
        assert (
            r["algorithm"]
            in predicate_schema["$defs"]["resource_descriptor"]["properties"]["algorithm"]["enum"]
        )
    bundle_schema = json.loads((DATA / "schemas" / "v1.0" / "bundle.schema.json").read_text())
    assert set(bundle_schema.get("required", [])) <= set(bundle)
    _schema_check(pred, predicate_schema)
