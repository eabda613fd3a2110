"""DSSE envelopes and in-toto attestations: PAE, trust by purpose, tampering, encodings."""

from __future__ import annotations

import base64
import json

import pytest

from mlflow_guard.core import dsse, errors, intoto
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore
from tests.conftest import KeyRing

PREDICATE = "https://mlflow-guard.dev/dataset/v1"


def test_pae_matches_the_spec_example() -> None:
    assert (
        dsse.pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def _store(keyring: KeyRing, *purposes: Purpose, revoked: tuple[str, ...] = ()) -> TrustStore:
    pair = keyring["dataset"]
    entry = TrustedKey("ci", pair.signer.public_key, frozenset(purposes))
    return TrustStore([entry], revoked)


def _statement() -> intoto.Statement:
    return intoto.Statement(
        subject=[intoto.Subject(name="data/train.csv", digest={"sha256": "ab" * 32})],
        predicate_type=PREDICATE,
        predicate={"rows": 10},
    )


def test_attestation_round_trip_and_purpose(keyring: KeyRing) -> None:
    env = intoto.sign_statement(_statement(), keyring["dataset"].signer)
    doc = json.dumps(env.to_json())
    st, key = intoto.verify_attestation(
        doc, _store(keyring, Purpose.DATASET), Purpose.DATASET, PREDICATE
    )
    assert st.subject[0].name == "data/train.csv"
    assert key.name == "ci"
    with pytest.raises(errors.KeyNotTrusted, match="not for 'dataset'"):
        intoto.verify_attestation(doc, _store(keyring, Purpose.MODEL), Purpose.DATASET, PREDICATE)
    with pytest.raises(errors.KeyNotTrusted, match="is revoked"):
        intoto.verify_attestation(
            doc, _store(keyring, Purpose.DATASET, revoked=("ci",)), Purpose.DATASET, PREDICATE
        )
    with pytest.raises(errors.SignatureInvalid, match="unexpected predicate type"):
        intoto.verify_attestation(
            doc,
            _store(keyring, Purpose.DATASET),
            Purpose.DATASET,
            "https://mlflow-guard.dev/approval/v1",
        )


def test_tampered_payload_and_untrusted_signer(keyring: KeyRing) -> None:
    env = intoto.sign_statement(_statement(), keyring["dataset"].signer).to_json()
    st = json.loads(base64.b64decode(env["payload"]))
    st["subject"][0]["digest"]["sha256"] = "cd" * 32
    forged = dict(env, payload=base64.b64encode(json.dumps(st).encode()).decode())
    with pytest.raises(errors.SignatureInvalid, match="no signature in the envelope verifies"):
        intoto.verify_attestation(
            forged, _store(keyring, Purpose.DATASET), Purpose.DATASET, PREDICATE
        )
    other = intoto.sign_statement(_statement(), keyring.get("stranger").signer).to_json()
    with pytest.raises(errors.KeyNotTrusted, match="is not in the trust store"):
        intoto.verify_attestation(
            other, _store(keyring, Purpose.DATASET), Purpose.DATASET, PREDICATE
        )
    other["signatures"][0]["keyid"] = ""  # no key hint: tried against every trusted key
    with pytest.raises(errors.SignatureInvalid):
        intoto.verify_attestation(
            other, _store(keyring, Purpose.DATASET), Purpose.DATASET, PREDICATE
        )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"{not json", "is not valid JSON"),
        ({"payload": "e30=", "payloadType": "x"}, "signatures: Field required"),
        ({"payload": "e30=", "payloadType": "x", "signatures": []}, "carries no signature"),
        (
            {"payload": "e30=", "payloadType": "x", "signatures": [], "extra": 1},
            "extra: Extra inputs",
        ),
    ],
)
def test_malformed_envelopes(doc: bytes | dict[str, object], message: str) -> None:
    with pytest.raises(errors.SignatureInvalid) as info:
        dsse.parse(doc)
    assert message in info.value.diagnostics()


def test_wrong_payload_type(keyring: KeyRing) -> None:
    env = dsse.sign(b"{}", "application/json", keyring["dataset"].signer)
    with pytest.raises(errors.SignatureInvalid, match="unexpected DSSE payloadType"):
        dsse.verify(env, _store(keyring, Purpose.DATASET), Purpose.DATASET)


def test_base64_is_strict() -> None:
    assert dsse.b64decode(base64.urlsafe_b64encode(b"\xfb\xff").decode(), "x") == b"\xfb\xff"
    assert (
        dsse.b64decode(base64.urlsafe_b64encode(b"\xfb\xff").decode().rstrip("="), "x")
        == b"\xfb\xff"
    )
    for bad in ("ab$d", "-_!x", "a"):
        with pytest.raises(errors.SignatureInvalid, match="is not valid base64"):
            dsse.b64decode(bad, "x")


def test_base64_must_be_canonical() -> None:
    assert base64.b64encode(b"\xff") == b"/w=="
    assert dsse.b64decode("/w==", "x") == b"\xff"
    with pytest.raises(errors.SignatureInvalid, match="not canonical base64"):
        dsse.b64decode("/x==", "x")  # same byte, stray low bits


def test_repeated_json_keys_are_refused(keyring: KeyRing) -> None:
    """Parsers disagree on which of two equal keys wins: an envelope or a signed statement with a
    repeated key is refused, even when the signature over it is valid."""
    env = intoto.sign_statement(_statement(), keyring["dataset"].signer).to_json()
    text = json.dumps(env)
    doubled = text[:-1] + ', "payload": "' + base64.b64encode(b"{}").decode() + '"}'
    with pytest.raises(errors.SignatureInvalid, match="not valid JSON") as e:
        dsse.parse(doubled)
    assert "duplicate key 'payload'" in " ".join(e.value.details)

    body = json.dumps(_statement().model_dump(by_alias=True))
    repeated = body[:-1] + f', "predicateType": "{PREDICATE}-other"' + "}"
    signed = dsse.sign(repeated.encode(), dsse.INTOTO_PAYLOAD_TYPE, keyring["dataset"].signer)
    with pytest.raises(errors.SignatureInvalid, match="signed payload is not valid JSON") as e:
        intoto.verify_attestation(
            json.dumps(signed.to_json()),
            _store(keyring, Purpose.DATASET),
            Purpose.DATASET,
            PREDICATE,
        )
    assert "duplicate key 'predicateType'" in " ".join(e.value.details)
