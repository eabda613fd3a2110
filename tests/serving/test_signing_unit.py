"""Response signatures (RFC 9421 over RFC 9530 digests), signed and verified offline."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from http_message_signatures import (
    HTTPMessageVerifier,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)

from mlflow_guard.core import keys
from mlflow_guard.core.errors import KeyMaterialError, SignatureInvalid
from mlflow_guard.serving import verify_response
from mlflow_guard.serving.signing import RESPONSE_COMPONENTS, ResponseSigner, content_digest

ROOT = "ab" * 32
BODY = b'{"predictions": [0, 1, 2]}'
REQ = b'{"inputs": [[1, 2, 3, 4]]}'


@dataclass
class FakeRequest:
    method: str
    url: str
    body: bytes | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeResponse:
    status_code: int
    headers: dict[str, str]
    content: bytes
    request: FakeRequest


def signed(
    key: keys.PrivateKey, *, body: bytes = BODY, status: int = 200, path: str = "/invocations"
) -> FakeResponse:
    signer = ResponseSigner(key, ROOT)
    headers = signer.headers_for(
        status=status,
        content_type="application/json",
        body=body,
        request_body_digest=content_digest(REQ),
        method="POST",
        raw_path=path,
    )
    return FakeResponse(status, headers, body, FakeRequest("POST", "https://h:1" + path, REQ))


@pytest.fixture(params=[keys.Algorithm.ECDSA_P256, keys.Algorithm.ED25519])
def key(request: pytest.FixtureRequest) -> keys.PrivateKey:
    return keys.generate(request.param)


def test_roundtrip(key: keys.PrivateKey) -> None:
    r = signed(key)
    v = verify_response(r, key.public_key(), expected_model_digest=ROOT)
    assert v.model_root_digest == ROOT
    assert v.key_id == keys.key_id(key.public_key())
    assert v.covered['"@path";req'] == "/invocations"
    assert r.headers["Content-Digest"] == content_digest(BODY)


def test_any_rfc9421_verifier_accepts(key: keys.PrivateKey) -> None:
    r = signed(key)
    alg = (
        algorithms.ED25519
        if keys.algorithm_name(key) == "ed25519"
        else algorithms.ECDSA_P256_SHA256
    )
    kid = keys.key_id(key.public_key())
    verifier = HTTPMessageVerifier(
        signature_algorithm=alg,
        key_resolver=MappingKeyResolver(public_keys={kid: key.public_key()}, private_keys={}),
    )
    [res] = verifier.verify(r, expect_tag="mlflow-guard-serving", body=r.content)
    assert res.body == BODY
    quoted = {c if c.startswith('"') else f'"{c}"' for c in RESPONSE_COMPONENTS}
    assert set(res.covered_components) == quoted | {'"@signature-params"'}


def _mutations() -> list[tuple[str, Any]]:
    def body(r: FakeResponse) -> None:
        r.content = r.content.replace(b"2", b"1")

    def status(r: FakeResponse) -> None:
        r.status_code = 201

    def model(r: FakeResponse) -> None:
        r.headers["X-Model-Root-Digest"] = "sha256:" + "cd" * 32

    def digest_and_body(r: FakeResponse) -> None:
        r.content = b'{"predictions": [1, 1, 1]}'
        r.headers["Content-Digest"] = content_digest(r.content)

    def other_request(r: FakeResponse) -> None:
        r.request.body = b'{"inputs": [[9, 9, 9, 9]]}'

    def other_path(r: FakeResponse) -> None:
        r.request.url = "https://h:1/version"

    def no_signature(r: FakeResponse) -> None:
        del r.headers["Signature"]

    return [
        ("body", body),
        ("status", status),
        ("model header", model),
        ("digest recomputed", digest_and_body),
        ("request swapped", other_request),
        ("path", other_path),
        ("signature removed", no_signature),
    ]


@pytest.mark.parametrize(("name", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_tampering_detected(key: keys.PrivateKey, name: str, mutate: Any) -> None:
    r = signed(key)
    mutate(r)
    with pytest.raises(SignatureInvalid) as e:
        verify_response(r, key.public_key())
    assert "do not use this prediction" in e.value.hint


def test_wrong_key_and_wrong_model(key: keys.PrivateKey) -> None:
    r = signed(key)
    with pytest.raises(SignatureInvalid):
        verify_response(r, keys.generate(keys.Algorithm.ED25519).public_key())
    with pytest.raises(SignatureInvalid):
        verify_response(r, keys.generate().public_key())
    with pytest.raises(SignatureInvalid, match="another model"):
        verify_response(r, key.public_key(), expected_model_digest="00" * 32)


def test_stale_signature_refused(key: keys.PrivateKey) -> None:
    r = signed(key)
    verify_response(r, key.public_key(), max_age=timedelta(seconds=60))
    with pytest.raises(SignatureInvalid, match="age"):
        verify_response(r, key.public_key(), max_age=timedelta(seconds=-10))


def test_third_party_verifier_rejects_tampered_body(key: keys.PrivateKey) -> None:
    r = signed(key)
    alg = (
        algorithms.ED25519
        if keys.algorithm_name(key) == "ed25519"
        else algorithms.ECDSA_P256_SHA256
    )
    kid = keys.key_id(key.public_key())
    verifier = HTTPMessageVerifier(
        signature_algorithm=alg,
        key_resolver=MappingKeyResolver(public_keys={kid: key.public_key()}, private_keys={}),
    )
    with pytest.raises(InvalidSignature):
        verifier.verify(r, expect_tag="mlflow-guard-serving", body=BODY + b" ")


def test_unusual_path_still_signed(key: keys.PrivateKey) -> None:
    r = signed(key, path="/a b\x7f", status=404)
    assert "Signature" in r.headers
    assert '"@path";req' not in r.headers["Signature-Input"]


def test_unsupported_key_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(KeyMaterialError, match="Ed25519 or ECDSA P-256"):
        ResponseSigner(ec.generate_private_key(ec.SECP384R1()), ROOT)
