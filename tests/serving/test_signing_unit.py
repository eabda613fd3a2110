"""Response signatures (RFC 9421 over RFC 9530 digests), signed and verified offline."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import http_sf
import pytest
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_guard.core import keys
from mlflow_guard.core.errors import KeyMaterialError, SignatureInvalid
from mlflow_guard.serving import signing, verify_response
from mlflow_guard.serving.signing import (
    FALLBACK_COMPONENTS,
    RESPONSE_COMPONENTS,
    ResponseSigner,
    algorithm_for,
    content_digest,
)

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


# -- the fast signer against the package's own builder and the http_sf serializer ----------


@dataclass
class PkgRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class PkgResponse:
    status_code: int
    headers: dict[str, str]
    request: PkgRequest | None


CREATED = 1_790_000_000


def _ours(
    key: keys.PrivateKey,
    *,
    status: int = 200,
    content_type: str = "application/json",
    method: str = "POST",
    raw_path: str = "/invocations",
) -> tuple[bytes, str, dict[str, str]]:
    signer = ResponseSigner(key, ROOT, clock=lambda: CREATED + 0.75)
    base, params = signer.signature_base(
        status=status,
        content_type=content_type,
        content_digest_value=content_digest(BODY),
        request_body_digest=content_digest(REQ),
        method=method,
        raw_path=raw_path,
        created=CREATED,
    )
    headers = signer.headers_for(
        status=status,
        content_type=content_type,
        body=BODY,
        request_body_digest=content_digest(REQ),
        method=method,
        raw_path=raw_path,
    )
    return base, params, headers


def _package(
    key: keys.PrivateKey,
    components: tuple[str, ...],
    *,
    status: int = 200,
    content_type: str = "application/json",
    method: str = "POST",
    raw_path: str = "/invocations",
) -> tuple[bytes, str]:
    """What ``http-message-signatures``' general builder makes of the same response."""
    alg = algorithm_for(key)
    headers = {
        "Content-Type": content_type,
        "Content-Digest": content_digest(BODY),
        "X-Model-Root-Digest": f"sha256:{ROOT}",
        "X-Request-Content-Digest": content_digest(REQ),
    }
    request: PkgRequest | None = PkgRequest(method, "http://serving.invalid" + raw_path)
    if components == FALLBACK_COMPONENTS:  # what the old signer did: no request at all
        request = None
    prepared = HTTPMessageSigner(signature_algorithm=alg).prepare(
        PkgResponse(status, headers, request),
        key_id=keys.key_id(key.public_key()),
        created=datetime.fromtimestamp(CREATED, tz=UTC),
        label="guard",
        tag="mlflow-guard-serving",
        covered_component_ids=components,
        use_existing_digest=True,
    )
    return prepared.signature_base, prepared.signature_params


CASES = [
    {},
    {"status": 401},
    {"status": 503, "content_type": "  application/json; charset=utf-8\t"},
    {"content_type": "text/plain;\tcharset=us-ascii"},
    {"raw_path": "/invocations?x=1&y=%20"},
    {"raw_path": "/a/b;c=d/%7Ee:f@g!$&'()*+,="},
    {"raw_path": "", "method": "GET"},
    {"method": "PATCH", "raw_path": "/ping"},
]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_signature_base_is_the_packages(key: keys.PrivateKey, case: dict[str, Any]) -> None:
    base, params, headers = _ours(key, **case)
    assert (base, params) == _package(key, RESPONSE_COMPONENTS, **case)
    assert headers["Signature-Input"] == f"guard={params}"


FALLBACK_CASES = [
    {"raw_path": "/a b"},
    {"raw_path": "/caf\u00e9"},
    {"raw_path": "/x%zz"},
    {"method": "post"},
]


@pytest.mark.parametrize("case", FALLBACK_CASES, ids=[str(c) for c in FALLBACK_CASES])
def test_unrepresentable_request_line_falls_back(
    key: keys.PrivateKey, case: dict[str, Any]
) -> None:
    base, params, _ = _ours(key, **case)
    assert (base, params) == _package(key, FALLBACK_COMPONENTS, **case)
    assert b"@path" not in base
    with pytest.raises(HTTPMessageSignaturesException):  # the package cannot either
        _package(key, RESPONSE_COMPONENTS, **case)


def test_asterisk_form_is_not_signed_as_a_path(key: keys.PrivateKey) -> None:
    # The package would read "http://serving.invalid*" as host "serving.invalid*" and sign
    # "@path" as "/", a path the client never asked for: the fast signer leaves it out.
    base, params, _ = _ours(key, method="OPTIONS", raw_path="*")
    assert (base, params) == _package(key, FALLBACK_COMPONENTS, method="OPTIONS", raw_path="*")
    assert b"@path" not in base


def test_query_is_not_covered_and_does_not_matter(key: keys.PrivateKey) -> None:
    # The package refuses a whole URL whose (uncovered) query is not RFC 3986; the fast
    # signer looks at the path only and still covers it.
    base, params, _ = _ours(key, raw_path='/invocations?a="b"')
    assert (base, params) == _package(key, RESPONSE_COMPONENTS, raw_path="/invocations?a=b")


@given(
    path=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
    status=st.integers(100, 599),
    content_type=st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"),
        max_size=40,
    ),
)
@settings(max_examples=300, deadline=None)
def test_signature_base_matches_package_for_any_printable_input(
    path: str, status: int, content_type: str
) -> None:
    key = _P256
    raw_path = "/" + path.replace("#", "").replace("?", "")  # the path only: queries below
    base, params, _ = _ours(key, raw_path=raw_path, status=status, content_type=content_type)
    components = RESPONSE_COMPONENTS if b'"@path";req' in base else FALLBACK_COMPONENTS
    assert (base, params) == _package(
        key, components, raw_path=raw_path, status=status, content_type=content_type
    )
    if components is FALLBACK_COMPONENTS:  # only when the package also refuses the path
        with pytest.raises(HTTPMessageSignaturesException):
            _package(key, RESPONSE_COMPONENTS, raw_path=raw_path)


_P256 = keys.generate(keys.Algorithm.ECDSA_P256)


def test_headers_are_the_http_sf_serialization(key: keys.PrivateKey) -> None:
    _, _, headers = _ours(key)
    inner = [
        (c.split('"')[1], {"req": True}) if ";req" in c else (c, {}) for c in RESPONSE_COMPONENTS
    ]
    params = {
        "created": CREATED,
        "keyid": keys.key_id(key.public_key()),
        "alg": algorithm_for(key).algorithm_id,
        "tag": "mlflow-guard-serving",
    }
    expected: Any = {"guard": (inner, params)}
    assert headers["Signature-Input"] == http_sf.ser(expected)
    parsed_sig: Any = http_sf.parse(headers["Signature"].encode(), tltype="dictionary")
    assert headers["Signature"] == http_sf.ser(parsed_sig)
    raw = parsed_sig["guard"][0]
    assert isinstance(raw, bytes)
    assert len(raw) == 64
    digest: Any = {"sha-256": (hashlib.sha256(BODY).digest(), {})}
    assert headers["Content-Digest"] == http_sf.ser(digest)


@pytest.mark.parametrize("value", ['a"b', "back\\slash", "plain", ""])
def test_sf_string_matches_http_sf(value: str) -> None:
    assert signing._sf_string(value) == http_sf.ser((value, {}))


@pytest.mark.parametrize("bad", ["caf\u00e9", "a\x00b", "a\nb", "a\rb", "a\x7fb"])
def test_unsignable_field_value_refused(bad: str) -> None:
    signer = ResponseSigner(_P256, ROOT)
    with pytest.raises(ValueError, match="content-type value cannot be signed"):
        signer.headers_for(
            status=200,
            content_type=bad,
            body=BODY,
            request_body_digest=content_digest(REQ),
            method="POST",
            raw_path="/invocations",
        )


def _header_mutations() -> list[tuple[str, Any]]:
    def digest_only(r: FakeResponse) -> None:
        r.headers["Content-Digest"] = content_digest(b"other")

    def created(r: FakeResponse) -> None:
        r.headers["Signature-Input"] = re.sub(
            r"created=(\d+)",
            lambda m: f"created={int(m.group(1)) - 1}",
            r.headers["Signature-Input"],
        )

    def component_dropped(r: FakeResponse) -> None:
        r.headers["Signature-Input"] = r.headers["Signature-Input"].replace(' "@path";req', "")

    def keyid(r: FakeResponse) -> None:
        r.headers["Signature-Input"] = re.sub(
            r'keyid="[0-9a-f]+"', 'keyid="' + "0" * 64 + '"', r.headers["Signature-Input"]
        )

    def tag(r: FakeResponse) -> None:
        r.headers["Signature-Input"] = r.headers["Signature-Input"].replace(
            "mlflow-guard-serving", "mlflow-guard-servinG"
        )

    def signature_bit(r: FakeResponse) -> None:
        raw = bytearray(base64.b64decode(r.headers["Signature"][len("guard=:") : -1]))
        raw[10] ^= 1
        r.headers["Signature"] = "guard=:" + base64.b64encode(bytes(raw)).decode() + ":"

    def model_digest(r: FakeResponse) -> None:
        r.headers["X-Model-Root-Digest"] = "sha256:" + "ab" * 31 + "ac"

    def request_digest(r: FakeResponse) -> None:
        r.headers["X-Request-Content-Digest"] = content_digest(b"x")

    def content_type(r: FakeResponse) -> None:
        r.headers["Content-Type"] = "text/html"

    return [
        ("content-digest", digest_only),
        ("signature-input created", created),
        ("signature-input component dropped", component_dropped),
        ("signature-input keyid", keyid),
        ("signature-input tag", tag),
        ("signature bit", signature_bit),
        ("model digest", model_digest),
        ("request digest", request_digest),
        ("content-type", content_type),
    ]


@pytest.mark.parametrize(
    ("name", "mutate"), _header_mutations(), ids=[m[0] for m in _header_mutations()]
)
def test_fast_signer_tampering_fails_both_verifiers(
    key: keys.PrivateKey, name: str, mutate: Any
) -> None:
    r = signed(key)
    verify_response(r, key.public_key(), expected_model_digest=ROOT)  # untampered: fine
    _package_verifier(key).verify(r, expect_tag="mlflow-guard-serving", body=r.content)
    mutate(r)
    with pytest.raises(SignatureInvalid) as e:
        verify_response(r, key.public_key(), expected_model_digest=ROOT)
    assert "do not use this prediction" in e.value.hint or "another model" in str(e.value)
    with pytest.raises((InvalidSignature, HTTPMessageSignaturesException)):
        _package_verifier(key).verify(
            r,
            expect_tag="mlflow-guard-serving",
            require_components=RESPONSE_COMPONENTS,
            body=r.content,
        )


def _package_verifier(key: keys.PrivateKey) -> HTTPMessageVerifier:
    kid = keys.key_id(key.public_key())
    return HTTPMessageVerifier(
        signature_algorithm=algorithm_for(key),
        key_resolver=MappingKeyResolver(public_keys={kid: key.public_key()}, private_keys={}),
    )


@given(
    body=st.binary(max_size=200),
    status=st.sampled_from([200, 400, 401, 404, 413, 429, 500, 503]),
)
@settings(max_examples=100, deadline=None)
def test_every_fast_signed_response_verifies_with_the_package(body: bytes, status: int) -> None:
    for key in (_P256, _ED):
        r = signed(key, body=body, status=status)
        [res] = _package_verifier(key).verify(
            r, expect_tag="mlflow-guard-serving", require_components=RESPONSE_COMPONENTS, body=body
        )
        assert res.body == body
        assert verify_response(r, key.public_key(), expected_model_digest=ROOT).created > 0


_ED = keys.generate(keys.Algorithm.ED25519)
