"""Record format: canonical bytes, signing algorithms, malformed input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_guard.core import feedback_records as fr
from mlflow_guard.core.feedback import Reason, RecordChecker, Rejection, SourceKeys
from mlflow_guard.core.skew import js_distance
from tests.feedback.conftest import NOW, Env


def _checker(env: Env) -> RecordChecker:
    return RecordChecker(env.policy.feedback, SourceKeys.from_policy(env.policy))


@pytest.mark.parametrize("who", ["checkout", "mobile", "web"])
def test_each_algorithm_verifies(env: Env, who: str) -> None:
    signer = {"checkout": env.checkout, "mobile": env.mobile, "web": env.web}[who]
    out = _checker(env).check(env.line(signer), NOW)
    assert isinstance(out, fr.Record), out
    assert out.alg == {"checkout": "ed25519", "mobile": "ecdsa-p256", "web": "hmac-sha256"}[who]


@pytest.mark.parametrize("who", ["checkout", "mobile", "web"])
def test_reserialized_with_other_whitespace_and_key_order_still_verifies(
    env: Env, who: str
) -> None:
    signer = {"checkout": env.checkout, "mobile": env.mobile, "web": env.web}[who]
    rec = signer.sign({"b": 1, "a": {"z": "ü", "y": [1, 2.5]}}, timestamp=int(NOW))
    reordered = {k: rec[k] for k in reversed(list(rec))}
    reordered["payload"] = {"a": {"y": [1, 2.5], "z": "ü"}, "b": 1}
    raw = json.dumps(reordered, indent=3, ensure_ascii=True).replace("\n", " ").encode()
    assert raw != signer.sign_line({"b": 1}, timestamp=int(NOW))
    out = _checker(env).check(raw, NOW)
    assert isinstance(out, fr.Record), out


def test_hmac_signs_id_timestamp_body_standard_webhooks(env: Env) -> None:
    import base64
    import hashlib
    import hmac

    rec = env.web.sign({"label": "x"}, record_id="msg_1", timestamp=1700000000)
    body = fr.canonical_bytes({k: rec[k] for k in ("id", "source", "timestamp", "payload")})
    expected = hmac.new(b"0123456789abcdef-web-secret", b"msg_1.1700000000." + body, hashlib.sha256)
    assert base64.b64decode(rec["signature"]["sig"]) == expected.digest()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"id": "a", "id": "b"}', "duplicate key"),
        (b'{"x": NaN}', "NaN"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"id": "a"} {"id": "b"}', "extra data"),
        (b'{"id": "a"}\x0c', "extra data"),
        (b"", "not valid JSON"),
    ],
)
def test_malformed_json_is_rejected(env: Env, raw: bytes, fragment: str) -> None:
    out = _checker(env).check(raw, NOW)
    assert isinstance(out, Rejection)
    assert out.reason is Reason.MALFORMED
    assert fragment in out.message


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("timestamp", True, "timestamp"),
        ("timestamp", 1.5, "timestamp"),
        ("id", "has space", "id must"),
        ("id", "a.b", "id must"),
        ("payload", [1], "payload must"),
        ("extra", 1, "unexpected ['extra']"),
    ],
)
def test_wrong_field_types_are_malformed(
    env: Env, field: str, value: object, fragment: str
) -> None:
    rec = env.checkout.sign({"label": "x"}, timestamp=int(NOW))
    rec[field] = value
    out = _checker(env).check(json.dumps(rec).encode(), NOW)
    assert isinstance(out, Rejection)
    assert out.reason is Reason.MALFORMED
    assert fragment in out.message


def test_unsupported_alg_and_bad_base64(env: Env) -> None:
    rec = env.checkout.sign({"label": "x"}, timestamp=int(NOW))
    rec["signature"]["alg"] = "none"
    out = _checker(env).check(json.dumps(rec).encode(), NOW)
    assert isinstance(out, Rejection)
    assert "signature.alg" in out.message
    rec["signature"] = {"alg": "ed25519", "sig": "***"}
    out = _checker(env).check(json.dumps(rec).encode(), NOW)
    assert isinstance(out, Rejection)
    assert "base64" in out.message


def test_short_hmac_secret_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        fr.decode_secret("short")
    assert (
        fr.decode_secret("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVg==") == b"ABCDEFGHIJKLMNOPQRSTUV"
    )


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=4), st.floats(0, 100), min_size=1, max_size=5),
    st.dictionaries(st.text(min_size=1, max_size=4), st.floats(0, 100), min_size=1, max_size=5),
)
def test_js_distance_is_a_bounded_symmetric_distance(
    p: dict[str, float], q: dict[str, float]
) -> None:
    d = js_distance(p, q)
    assert 0.0 <= d <= 1.0
    assert abs(d - js_distance(q, p)) < 1e-9
    if sum(p.values()) > 0:
        assert js_distance(p, p) < 1e-6


def test_js_distance_known_values() -> None:
    assert js_distance({"a": 1}, {"b": 1}) == pytest.approx(1.0)
    assert js_distance({"a": 1, "b": 1}, {"a": 2, "b": 2}) == pytest.approx(0.0)
    # JS divergence of (1,0) vs (0.5,0.5) in bits is 0.3113; the distance is its square root.
    assert js_distance({"a": 1}, {"a": 1, "b": 1}) == pytest.approx(0.3113**0.5, abs=1e-3)


_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 1.0, 1e-4, 9.99e-5, 1e16, 1e15 + 0.5, 123.456, 1e21, 5e-324])
    | st.text()
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=12,
)


def _canonical_or_error(fn: object) -> bytes | str:
    try:
        out = fn()  # type: ignore[operator]
    except fr.MalformedRecord:
        return "MalformedRecord"
    assert isinstance(out, bytes)
    return out


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.text(max_size=6), _JSON, max_size=5),
    st.booleans(),
    st.integers(min_value=0, max_value=2**53 - 1),
)
def test_fast_canonical_bytes_equal_the_rfc8785_package(
    payload: dict[str, object], ascii_only: bool, ts: int
) -> None:
    """Whatever path a record takes (C json encoder or rfc8785), its signed bytes are JCS."""
    rec = {
        "signature": {"alg": "ed25519", "sig": "AAAA"},
        "payload": payload,
        "timestamp": ts,
        "source": "s.1",
        "id": "rec_1",
    }
    line = json.dumps(rec, ensure_ascii=ascii_only, separators=(", ", ": ")).encode(
        "utf-8", "surrogatepass"
    )
    parsed = _canonical_or_error(lambda: fr.parse_record(line).canonical())
    unsigned = {k: rec[k] for k in ("id", "source", "timestamp")}
    unsigned["payload"] = json.loads(line)["payload"]
    reference = _canonical_or_error(lambda: fr.canonical_bytes(unsigned))
    assert parsed == reference


@pytest.mark.parametrize(
    ("payload_json", "plain"),
    [
        ('{"a": 1, "b": 0.25, "c": "x\\u0001\\"y"}', True),
        ('{"score": 0.0}', False),  # JCS prints 0, Python 0.0
        ('{"big": 9007199254740993}', False),  # beyond 2**53: rfc8785 refuses it
        ('{"tiny": 1e-07}', False),  # JCS 1e-7, Python 1e-07
        ('{"e": 1E2}', False),
    ],
)
def test_number_shapes_pick_the_right_canonicalizer(payload_json: str, plain: bool) -> None:
    line = (
        '{"id": "r1", "source": "s", "timestamp": 1, "signature": {"alg": "ed25519", '
        f'"sig": "AAAA"}}, "payload": {payload_json}}}'
    ).encode()
    rec = fr.parse_record(line)
    assert rec.plain_numbers is plain
    unsigned = {"id": "r1", "source": "s", "timestamp": 1, "payload": json.loads(payload_json)}
    assert _canonical_or_error(rec.canonical) == _canonical_or_error(
        lambda: fr.canonical_bytes(unsigned)
    )


def test_keys_beyond_the_bmp_sort_by_utf16_code_units() -> None:
    """U+FF61 sorts before U+1F600 by code point but after it by UTF-16 code unit (JCS)."""
    payload = {"\uff61": 1, "\U0001f600": 2}
    line = json.dumps(
        {
            "id": "r1",
            "source": "s",
            "timestamp": 1,
            "payload": payload,
            "signature": {"alg": "ed25519", "sig": "AAAA"},
        }
    ).encode()
    canonical = fr.parse_record(line).canonical()
    assert canonical.index("\U0001f600".encode()) < canonical.index("\uff61".encode())
    assert canonical == fr.canonical_bytes(
        {"id": "r1", "source": "s", "timestamp": 1, "payload": payload}
    )


def test_utf8_bom_is_ignored_and_other_encodings_are_malformed() -> None:
    line = json.dumps(
        {
            "id": "r1",
            "source": "s",
            "timestamp": 1,
            "payload": {},
            "signature": {"alg": "ed25519", "sig": "AAAA"},
        }
    )
    assert fr.parse_record(b"\xef\xbb\xbf" + line.encode()).id == "r1"
    assert fr.parse_record(b"\xef\xbb\xbf  " + line.encode() + b" \r").id == "r1"
    with pytest.raises(fr.MalformedRecord, match="not UTF-8"):
        fr.parse_record(line.encode("utf-16"))
