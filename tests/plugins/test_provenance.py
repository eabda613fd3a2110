"""SLSA provenance: build, sign, read back, bad input, and the policy's lineage requirements."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mlflow_guard.core import provenance
from mlflow_guard.core.errors import KeyNotTrusted, SignatureInvalid
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustStore
from tests.conftest import KeyRing

ROOT = "ab" * 32


def _input(**over: object) -> provenance.ProvenanceInput:
    base: dict[str, object] = {
        "model_name": "m-1",
        "root_digest": ROOT,
        "source": provenance.Source(
            repository="https://example.com/r.git", commit="c" * 40, dirty=False
        ),
        "run": provenance.RunInfo(
            run_id="r1",
            experiment_id="0",
            model_id="m-1",
            user="alice",
            started_on=datetime(2026, 1, 1, tzinfo=UTC),
            finished_on=datetime(2026, 1, 1, 0, 5, tzinfo=UTC),
        ),
        "datasets": (
            provenance.Dataset(
                "data/a.csv",
                md5="0" * 32,
                hash_kind="md5",
                sha256="1" * 64,
                signature="data/a.csv.dvc.sig",
            ),
        ),
        "environment_sha256": "e" * 64,
        "environment": {"python": "CPython 3.11", "distributions": ["x==1"]},
    }
    base.update(over)
    return provenance.ProvenanceInput(**base)  # type: ignore[arg-type]


def _trust(ring: KeyRing) -> TrustStore:
    return TrustStore.single(ring["model"].key.public_key(), [Purpose.MODEL])


def test_statement_shape() -> None:
    st = provenance.build_statement(_input())
    doc = json.loads(st.to_json_bytes())
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["predicateType"] == "https://slsa.dev/provenance/v1"
    assert doc["subject"] == [{"name": "m-1", "digest": {"sha256": ROOT}}]
    bd = doc["predicate"]["buildDefinition"]
    assert bd["externalParameters"]["commit"] == "c" * 40
    assert bd["internalParameters"]["mlflow"]["runId"] == "r1"
    kinds = [d["annotations"]["kind"] for d in bd["resolvedDependencies"]]
    assert kinds == ["source", "dataset", "environment"]
    md = doc["predicate"]["runDetails"]["metadata"]
    assert md == {
        "invocationId": "r1",
        "startedOn": "2026-01-01T00:00:00Z",
        "finishedOn": "2026-01-01T00:05:00Z",
    }


def test_signed_roundtrip_and_tampering(keyring: KeyRing) -> None:
    body = provenance.sign(provenance.build_statement(_input()), keyring["model"].signer)
    att = provenance.read(body, expected_root=ROOT, trust=_trust(keyring))
    assert att.signed_by is not None
    assert att.signed_by.key_id == keyring["model"].key_id
    env = json.loads(body)
    env["payload"] = env["payload"][:-8] + "AAAAAAA="
    with pytest.raises(SignatureInvalid):
        provenance.read(json.dumps(env).encode(), expected_root=ROOT, trust=_trust(keyring))


def test_attestation_for_another_model_is_refused(keyring: KeyRing) -> None:
    body = provenance.sign(provenance.build_statement(_input()), keyring["model"].signer)
    with pytest.raises(SignatureInvalid, match="attestation for another model") as e:
        provenance.read(body, expected_root="cd" * 32, trust=_trust(keyring))
    assert any(ROOT in d for d in e.value.details)


def test_corrupt_and_untrusted(keyring: KeyRing) -> None:
    with pytest.raises(SignatureInvalid, match="not valid JSON"):
        provenance.read(b"{oops", expected_root=ROOT, trust=_trust(keyring))
    body = provenance.sign(provenance.build_statement(_input()), keyring.get("stranger").signer)
    with pytest.raises(KeyNotTrusted):
        provenance.read(body, expected_root=ROOT, trust=_trust(keyring))
    wrong_purpose = TrustStore.single(keyring["model"].key.public_key(), [Purpose.DATASET])
    body = provenance.sign(provenance.build_statement(_input()), keyring["model"].signer)
    with pytest.raises(KeyNotTrusted):
        provenance.read(body, expected_root=ROOT, trust=wrong_purpose)


def test_unsigned_statement_reads_as_unsigned() -> None:
    att = provenance.read(
        provenance.unsigned(provenance.build_statement(_input())), expected_root=ROOT
    )
    assert att.signed_by is None
    assert provenance.unmet_requirements(att, ["attestation"])[0].startswith("attestation:")


def test_requirements(keyring: KeyRing) -> None:
    trust = _trust(keyring)
    body = provenance.sign(provenance.build_statement(_input()), keyring["model"].signer)
    att = provenance.read(body, expected_root=ROOT, trust=trust)
    all_but_base = ["attestation", "git_commit", "git_clean", "datasets_signed", "environment"]
    assert provenance.unmet_requirements(att, all_but_base, trust) == []
    unmet = provenance.unmet_requirements(att, ["base_model_signed", "nonsense"], trust)
    assert unmet[0].startswith("base_model_signed: no base model")
    assert unmet[1] == "nonsense: unknown lineage requirement (denied)"
    assert provenance.unmet_requirements(None, ["git_commit"])[0].startswith("git_commit: no prov")


def test_requirements_fail_on_dirty_unsigned_data_and_untrusted_base(keyring: KeyRing) -> None:
    trust = _trust(keyring)
    stranger = keyring.get("stranger")
    st = provenance.build_statement(
        _input(
            source=provenance.Source(commit="c" * 40, dirty=True),
            datasets=(provenance.Dataset("data/b.csv", md5="0" * 32),),
            base_models=(
                provenance.BaseModelRef("models:/base/1", "f" * 64, keyring["model"].key_id),
                provenance.BaseModelRef("models:/evil/1", "f" * 64, stranger.key_id),
            ),
        )
    )
    att = provenance.read(
        provenance.sign(st, keyring["model"].signer), expected_root=ROOT, trust=trust
    )
    unmet = provenance.unmet_requirements(
        att, ["git_clean", "datasets_signed", "base_model_signed"], trust
    )
    assert unmet[0].startswith("git_clean:")
    assert "data/b.csv" in unmet[1]
    assert len(unmet) == 3
    assert "models:/evil/1" in unmet[2]


def test_subject_digest_excludes_signature_and_provenance() -> None:
    res = {"MLmodel": b"\x01" * 32, provenance.PROVENANCE_FILE: b"\x02" * 32, "model.sig": b"\x03"}
    from mlflow_guard.core import hashing

    assert provenance.subject_digest(res) == hashing.root_digest([b"\x01" * 32])
    shards = {"MLmodel:0:5": b"\x01" * 32, f"{provenance.PROVENANCE_FILE}:0:9": b"\x02" * 32}
    assert provenance.subject_digest(shards, "shards") == hashing.root_digest([b"\x01" * 32])
