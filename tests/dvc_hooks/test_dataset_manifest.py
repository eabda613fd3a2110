"""Unit tests of the pure dataset-manifest core: sign, verify, and the tampering table."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_guard.core import dataset, dsse, intoto, keys
from mlflow_guard.core.errors import (
    KeyNotTrusted,
    ManifestMismatch,
    SignatureInvalid,
    UnsafePath,
)
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore

SHA_A, SHA_B = "a" * 64, "b" * 64


def _manifest(sha: str = SHA_A) -> dataset.DatasetManifest:
    out = dataset.DatasetOutput(
        path="data/images",
        hash_kind="md5",
        md5="0" * 32 + ".dir",
        size=10,
        nfiles=2,
        is_dir=True,
        files=[
            dataset.DatasetFile(path="a.bin", sha256=sha, size=5),
            dataset.DatasetFile(path="b.bin", sha256=SHA_B, size=5),
        ],
    )
    return dataset.DatasetManifest(dvc_file="data/images.dvc", outputs=[out])


@pytest.fixture(scope="module")
def ring() -> dict[str, keys.PrivateKey]:
    return {n: keys.generate() for n in ("ci", "eve", "old", "exp", "model")}


@pytest.fixture(scope="module")
def trust(ring: dict[str, keys.PrivateKey]) -> TrustStore:
    ds = frozenset([Purpose.DATASET])
    return TrustStore(
        [
            TrustedKey("ci", ring["ci"].public_key(), ds),
            TrustedKey("eve", ring["eve"].public_key(), ds),
            TrustedKey("old", ring["old"].public_key(), ds),
            TrustedKey("exp", ring["exp"].public_key(), ds, datetime(2020, 1, 1, tzinfo=UTC)),
            TrustedKey("model", ring["model"].public_key(), frozenset([Purpose.MODEL])),
        ],
        revoked=["old"],
    )


SIGNERS = ["ci", "old", "exp", "model"]


def _sign(ring: dict[str, keys.PrivateKey], name: str = "ci") -> bytes:
    env = dataset.sign_manifest(_manifest(), keys.Signer(ring[name]))
    return json.dumps(env.to_json()).encode()


def test_round_trip_binds_subjects(ring: dict[str, keys.PrivateKey], trust: TrustStore) -> None:
    manifest, key = dataset.verify_manifest(_sign(ring), trust, SIGNERS)
    assert key.name == "ci"
    assert manifest.outputs[0].files[0].sha256 == SHA_A
    assert manifest.signed_at is not None
    assert manifest.signed_at.endswith("Z")
    st = json.loads(dsse.parse(_sign(ring)).payload_bytes())
    assert st["predicateType"] == dataset.PREDICATE_TYPE
    assert st["subject"] == [
        {"name": "data/images", "digest": {"sha256": _manifest().outputs[0].digest()}}
    ]


@pytest.mark.parametrize(
    ("signer", "signers", "match"),
    [
        ("eve", SIGNERS, "not a dataset signer"),
        ("old", SIGNERS, "revoked"),
        ("exp", SIGNERS, "expired"),
        ("model", SIGNERS, "not for 'dataset'"),
        ("ci", [], "names no dataset signers"),
    ],
)
def test_untrusted_keys_are_refused(
    ring: dict[str, keys.PrivateKey],
    trust: TrustStore,
    signer: str,
    signers: list[str],
    match: str,
) -> None:
    with pytest.raises(KeyNotTrusted, match=match):
        dataset.verify_manifest(_sign(ring, signer), trust, signers)


def test_unknown_key_is_refused(trust: TrustStore) -> None:
    env = dataset.sign_manifest(_manifest(), keys.Signer(keys.generate()))
    with pytest.raises(KeyNotTrusted, match="not in the trust store"):
        dataset.verify_manifest(env.to_json(), trust, SIGNERS)


def test_subject_that_disagrees_with_predicate_is_refused(
    ring: dict[str, keys.PrivateKey], trust: TrustStore
) -> None:
    st = dataset.build_statement(_manifest())
    st.subject[0].digest["sha256"] = SHA_B
    env = intoto.sign_statement(st, keys.Signer(ring["ci"]))
    with pytest.raises(SignatureInvalid, match="subjects do not match"):
        dataset.verify_manifest(env.to_json(), trust, SIGNERS)


def test_other_predicate_type_and_tampered_payload_are_refused(
    ring: dict[str, keys.PrivateKey], trust: TrustStore
) -> None:
    st = dataset.build_statement(_manifest()).model_copy(
        update={"predicate_type": "https://example.org/other/v1"}
    )
    env = intoto.sign_statement(st, keys.Signer(ring["ci"]))
    with pytest.raises(SignatureInvalid, match="unexpected predicate type"):
        dataset.verify_manifest(env.to_json(), trust, SIGNERS)
    good = json.loads(_sign(ring))
    payload = json.loads(dsse.b64decode(good["payload"], "p"))
    payload["predicate"]["outputs"][0]["files"][0]["sha256"] = SHA_B
    import base64

    good["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    with pytest.raises(SignatureInvalid):
        dataset.verify_manifest(good, trust, SIGNERS)


def test_malformed_predicate_is_refused(
    ring: dict[str, keys.PrivateKey], trust: TrustStore
) -> None:
    st = intoto.Statement(
        subject=[intoto.Subject(name="x", digest={"sha256": SHA_A})],
        predicate_type=dataset.PREDICATE_TYPE,
        predicate={"dvc_file": "x.dvc", "outputs": [{"path": "x"}]},
    )
    env = intoto.sign_statement(st, keys.Signer(ring["ci"]))
    with pytest.raises(SignatureInvalid, match="not a dataset manifest"):
        dataset.verify_manifest(env.to_json(), trust, SIGNERS)


def test_compare_outputs_lists_added_removed_changed() -> None:
    signed = _manifest().outputs[0]
    actual = signed.model_copy(
        update={
            "files": [
                dataset.DatasetFile(path="a.bin", sha256=SHA_B, size=5),
                dataset.DatasetFile(path="c.bin", sha256=SHA_B, size=5),
            ]
        }
    )
    with pytest.raises(ManifestMismatch) as ei:
        dataset.compare_outputs(signed, actual, source="t")
    assert ei.value.changed == ["data/images/a.bin"]
    assert ei.value.missing == ["data/images/b.bin"]
    assert ei.value.extra == ["data/images/c.bin"]
    dataset.compare_outputs(signed, signed, source="t")  # identical: no error


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "path": st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20),
                "sha256": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
                "size": st.integers(min_value=0, max_value=2**53 - 1),
            }
        ),
        max_size=8,
    )
)
def test_canonical_json_equals_rfc8785(listing: list[dict[str, str | int]]) -> None:
    import rfc8785

    assert dataset.canonical_json(listing) == rfc8785.dumps(listing)


def test_non_utf8_file_name_is_refused_not_crashed() -> None:
    with pytest.raises(UnsafePath, match="not valid UTF-8"):
        dataset.canonical_json([{"path": "bad\udcff.csv", "sha256": SHA_A, "size": 1}])
