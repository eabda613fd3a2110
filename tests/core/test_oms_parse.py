"""Hostile OMS bundles that are valid JSON and validly signed: each is refused with a reason."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from mlflow_guard.core import dsse, errors, oms
from mlflow_guard.core.trust import TrustStore
from tests.conftest import KeyPair, ModelFactory


def _bundle_with(model_key: KeyPair, statement: dict[str, Any] | bytes) -> bytes:
    payload = statement if isinstance(statement, bytes) else json.dumps(statement).encode()
    env = dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, model_key.signer, keyid="")
    return json.dumps(
        {
            "mediaType": oms.BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": ""}, "tlogEntries": []},
            "dsseEnvelope": env.to_json(),
        }
    ).encode()


def _statement(root: str = "00" * 32, **predicate: Any) -> dict[str, Any]:
    pred = {
        "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": False},
        "resources": [],
    }
    pred.update(predicate)
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "m", "digest": {"sha256": root}}],
        "predicateType": oms.PREDICATE_TYPE,
        "predicate": pred,
    }


def _good_statement(model_key: KeyPair, make_model: ModelFactory) -> dict[str, Any]:
    model = make_model()
    oms.sign_model(model, model_key.signer)
    bundle = json.loads((model / oms.SIGNATURE_FILE).read_bytes())
    out: dict[str, Any] = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return out


def _mutate(st: dict[str, Any], fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    fn(st)
    return st


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda st: st["predicate"]["resources"][0].update(digest="abc"), "String should match"),
        (
            lambda st: st["predicate"]["resources"][0].update(algorithm="md5"),
            "resources.0.algorithm",
        ),
        (
            lambda st: st["predicate"]["resources"][1].update(algorithm="blake3"),
            "uses blake3, serialization says sha256",
        ),
        (
            lambda st: st["predicate"]["resources"].append(st["predicate"]["resources"][0]),
            "is listed twice",
        ),
        (
            lambda st: st["subject"][0]["digest"].update(sha256="11" * 32),
            "inconsistent with its root",
        ),
        (lambda st: st["predicate"]["serialization"].update(method="tar"), "serialization.method"),
        (lambda st: st.update(_type="https://in-toto.io/Statement/v0.1"), "_type"),
        (lambda st: st["predicate"].update(extra=1), "extra"),
        (
            lambda st: st["predicate"]["serialization"].update(method="shards"),
            "shards serialization without shard_size",
        ),
    ],
)
def test_signed_but_malformed_statements(
    change: Callable[[dict[str, Any]], None],
    message: str,
    model_key: KeyPair,
    make_model: ModelFactory,
) -> None:
    st = _mutate(_good_statement(model_key, make_model), change)
    with pytest.raises(errors.SignatureInvalid) as info:
        oms.verify_bundle(
            _bundle_with(model_key, st), TrustStore.single(model_key.signer.public_key)
        )
    assert message in info.value.diagnostics()


def test_statement_schema_error_is_not_reported_as_bad_json(model_key: KeyPair) -> None:
    with pytest.raises(errors.SignatureInvalid) as info:
        oms.parse_bundle(_bundle_with(model_key, {"_type": "x"}))
    assert "is not an in-toto Statement v1" in info.value.summary
    assert any("subject" in d for d in info.value.details)


def test_payload_not_json(model_key: KeyPair) -> None:
    with pytest.raises(errors.SignatureInvalid, match="signed payload is not valid JSON"):
        oms.parse_bundle(_bundle_with(model_key, b"\xff\xfe"))


def test_duplicate_json_keys_refused(model_key: KeyPair) -> None:
    st = json.dumps(_statement())
    dup = st.replace('"predicateType"', '"predicateType": "https://evil/v1", "predicateType"', 1)
    with pytest.raises(errors.SignatureInvalid) as info:
        oms.parse_bundle(_bundle_with(model_key, dup.encode()))
    assert "duplicate key 'predicateType'" in info.value.diagnostics()
    outer = _bundle_with(model_key, _statement()).decode()
    outer = outer.replace('"mediaType"', '"mediaType": "x", "mediaType"', 1)
    with pytest.raises(errors.SignatureInvalid, match="is not valid JSON"):
        oms.parse_bundle(outer.encode())


def test_empty_manifest_of_empty_dir_round_trips(model_key: KeyPair, tmp_path: Any) -> None:
    """An empty model is signable and verifiable; adding any file afterwards is caught."""
    (tmp_path / "m").mkdir()
    oms.sign_model(tmp_path / "m", model_key.signer)
    trust = TrustStore.single(model_key.signer.public_key)
    assert oms.verify_model(tmp_path / "m", trust).files == 0
    (tmp_path / "m" / "x").write_bytes(b"")
    with pytest.raises(errors.ManifestMismatch) as info:
        oms.verify_model(tmp_path / "m", trust)
    assert info.value.extra == ["x"]
