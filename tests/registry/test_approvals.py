"""Promotion approvals: what counts, what is ignored and why, and signed-approval verification."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from mlflow_guard.core import approvals, keys
from mlflow_guard.core.approvals import Approval, PromotionSubject, Target
from mlflow_guard.core.errors import KeyNotTrusted, SignatureInvalid
from mlflow_guard.core.policy import ProtectedAlias, Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DIGEST = "ab" * 32
OTHER = "cd" * 32
PROD = Target("alias", "production")
ROLES = {"reviewer": ["bob", "carol", "alice"], "data-scientist": ["alice", "dave"]}
RULE = ProtectedAlias(
    alias="production",
    approvals=2,
    approver_roles=["reviewer"],
    approval_ttl=timedelta(days=7),
    gates={"metrics": {"accuracy": ">= 0.9"}},
)


@pytest.fixture(scope="module")
def approvers() -> dict[str, keys.PrivateKey]:
    return {name: keys.generate() for name in ("bob", "carol", "mallory", "ci")}


@pytest.fixture(scope="module")
def trust(approvers: dict[str, keys.PrivateKey]) -> TrustStore:
    entries = [
        TrustedKey("bob", approvers["bob"].public_key(), frozenset({Purpose.APPROVAL})),
        TrustedKey("carol", approvers["carol"].public_key(), frozenset({Purpose.APPROVAL})),
        TrustedKey("mallory", approvers["mallory"].public_key(), frozenset({Purpose.APPROVAL})),
        TrustedKey("ci", approvers["ci"].public_key(), frozenset({Purpose.MODEL})),
    ]
    return TrustStore(entries, revoked=["mallory"])


def subject(**kw: object) -> PromotionSubject:
    base: dict[str, object] = {
        "model": "fraud-detector",
        "version": "3",
        "target": PROD,
        "root_digest": DIGEST,
        "run_creator": "alice",
        "version_creator": "alice",
        "signer_identities": frozenset({"ci"}),
        "metrics": {"accuracy": 0.95},
    }
    base.update(kw)
    return PromotionSubject(**base)  # type: ignore[arg-type]


def approval(approver: str, **kw: object) -> Approval:
    base: dict[str, object] = {
        "model": "fraud-detector",
        "version": "3",
        "target": PROD,
        "root_digest": DIGEST,
        "approver": approver,
        "decision": "approve",
        "issued_at": NOW - timedelta(hours=1),
        "kind": "authenticated",
    }
    base.update(kw)
    return Approval(**base)  # type: ignore[arg-type]


def test_two_distinct_reviewers_allow() -> None:
    st = approvals.evaluate(subject(), RULE, [approval("bob"), approval("carol")], ROLES, now=NOW)
    assert st.decision.allowed
    assert sorted(a.approver for a in st.counted) == ["bob", "carol"]


def test_duplicate_approval_counts_once() -> None:
    st = approvals.evaluate(subject(), RULE, [approval("bob"), approval("bob")], ROLES, now=NOW)
    assert not st.decision.allowed
    assert "1 of 2 required approvals" in st.decision.reasons[0]


@pytest.mark.parametrize(
    ("appr", "why"),
    [
        (approval("alice"), "created the run or the version"),
        (approval("dave"), "holds none of the approver roles"),
        (approval("carol", root_digest=OTHER), "now hash to"),
        (approval("carol", target=Target("alias", "champion")), "is for alias:champion"),
        (approval("carol", version="2"), "not fraud-detector version 3"),
        (approval("carol", expires_at=NOW - timedelta(seconds=1)), "expired at"),
        (approval("carol", issued_at=NOW - timedelta(days=8)), "approval_ttl"),
        (approval("carol", issued_at=NOW + timedelta(hours=1)), "in the future"),
    ],
)
def test_ignored_approvals_say_why(appr: Approval, why: str) -> None:
    st = approvals.evaluate(subject(), RULE, [approval("bob"), appr], ROLES, now=NOW)
    assert not st.decision.allowed
    assert [a.approver for a in st.counted] == ["bob"]
    assert len(st.ignored) == 1
    assert why in st.ignored[0][1]


def test_signer_cannot_approve() -> None:
    st = approvals.evaluate(
        subject(signer_identities=frozenset({"carol"})),
        RULE,
        [approval("bob"), approval("carol")],
        ROLES,
        now=NOW,
    )
    assert not st.decision.allowed
    assert "signed the model" in st.ignored[0][1]


def test_rejection_blocks_until_withdrawn() -> None:
    rej = approval(
        "carol", decision="reject", comment="label leak", issued_at=NOW - timedelta(minutes=30)
    )
    st = approvals.evaluate(
        subject(), RULE, [approval("bob"), approval("alice2"), rej], ROLES, now=NOW
    )
    assert not st.decision.allowed
    assert any("rejected by carol" in r and "label leak" in r for r in st.decision.reasons)
    later = approval("carol", issued_at=NOW - timedelta(minutes=5))
    st2 = approvals.evaluate(subject(), RULE, [approval("bob"), rej, later], ROLES, now=NOW)
    assert st2.decision.allowed


@pytest.mark.parametrize(
    ("metrics", "text"),
    [
        ({}, "accuracy = missing"),
        ({"accuracy": 0.85}, "accuracy = 0.85"),
        ({"accuracy": float("nan")}, "nan"),
    ],
)
def test_metric_gates_fail_closed(metrics: dict[str, float], text: str) -> None:
    st = approvals.evaluate(
        subject(metrics=metrics), RULE, [approval("bob"), approval("carol")], ROLES, now=NOW
    )
    assert not st.decision.allowed
    assert any("metric gate failed" in r and text in r for r in st.decision.reasons)


def test_signed_approval_round_trip(
    approvers: dict[str, keys.PrivateKey], trust: TrustStore
) -> None:
    env = approvals.create_signed(
        "fraud-detector", "3", PROD, DIGEST, keys.Signer(approvers["bob"]), now=NOW, comment="ok"
    )
    a = approvals.verify_signed(env.to_json(), trust)
    assert (a.approver, a.kind, a.decision, a.root_digest) == ("bob", "signed", "approve", DIGEST)
    assert a.expires_at == NOW + timedelta(days=7)
    st = approvals.evaluate(subject(), RULE, [a, approval("carol")], ROLES, now=NOW)
    assert st.decision.allowed


def test_revoked_approver_key_is_refused(
    approvers: dict[str, keys.PrivateKey], trust: TrustStore
) -> None:
    env = approvals.create_signed(
        "fraud-detector", "3", PROD, DIGEST, keys.Signer(approvers["mallory"])
    )
    with pytest.raises(KeyNotTrusted, match="revoked"):
        approvals.verify_signed(env.to_json(), trust)


def test_model_key_cannot_sign_approvals(
    approvers: dict[str, keys.PrivateKey], trust: TrustStore
) -> None:
    env = approvals.create_signed("fraud-detector", "3", PROD, DIGEST, keys.Signer(approvers["ci"]))
    with pytest.raises(KeyNotTrusted, match="not for 'approval'"):
        approvals.verify_signed(env.to_json(), trust)


def test_untrusted_key_is_refused(trust: TrustStore) -> None:
    env = approvals.create_signed("fraud-detector", "3", PROD, DIGEST, keys.Signer(keys.generate()))
    with pytest.raises(KeyNotTrusted, match="not in the trust store"):
        approvals.verify_signed(env.to_json(), trust)


def test_edited_approval_fails_signature(
    approvers: dict[str, keys.PrivateKey], trust: TrustStore
) -> None:
    env = approvals.create_signed(
        "fraud-detector", "3", PROD, DIGEST, keys.Signer(approvers["bob"])
    )
    doc = env.to_json()
    stmt = json.loads(base64.b64decode(doc["payload"]))
    stmt["predicate"]["root_digest"] = OTHER
    stmt["subject"][0]["digest"]["sha256"] = OTHER
    doc["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    with pytest.raises(SignatureInvalid, match="no signature in the envelope verifies"):
        approvals.verify_signed(doc, trust)


def test_target_parse() -> None:
    assert Target.parse("production") == PROD
    assert Target.parse("stage:Production") == Target("stage", "Production")
    with pytest.raises(Exception, match="bad promotion target"):
        Target.parse("bogus:x")
