"""The ingestion pipeline: every kind of bad record lands in quarantine, byte-for-byte."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mlflow_guard.core import keys
from mlflow_guard.core.errors import VerificationError
from mlflow_guard.feedback import FeedbackSigner
from mlflow_guard.feedback.quarantine import QUARANTINED, RELEASED
from mlflow_guard.feedback.store import Tx
from tests.feedback.conftest import NOW, Env


def _dataset(env: Env) -> bytes:
    return env.into.read_bytes() if env.into.exists() else b""


def _only_rejection(env: Env, bad: bytes, reason: str, fragment: str) -> None:
    good = env.line(env.checkout, "ok")
    before = _dataset(env)
    q_before = len(env.qfile.entries())
    res = env.ingestor().ingest(good + b"\n" + bad + b"\n")
    assert [a.raw for a in res.accepted] == [good]
    assert [(e.line, e.reason) for e in res.quarantined] == [(2, reason)]
    assert fragment in res.quarantined[0].message
    assert _dataset(env) == before + good + b"\n"
    stored = env.qfile.entries()[q_before:]
    assert [e.raw for e in stored] == [bad]
    assert stored[0].status == QUARANTINED


def test_forged_payload(env: Env) -> None:
    rec = json.loads(env.line(env.checkout, "legit"))
    rec["payload"]["label"] = "forged"
    _only_rejection(env, json.dumps(rec).encode(), "bad-signature", "does not verify")


def test_wrong_key_claiming_the_source(env: Env) -> None:
    impostor = FeedbackSigner("checkout", env.kp.other)
    _only_rejection(env, env.line(impostor), "untrusted-key", "has key")
    raw = json.loads(env.line(impostor))
    raw["signature"].pop("keyid")
    _only_rejection(env, json.dumps(raw).encode(), "bad-signature", "does not verify")


def test_algorithm_confusion_is_refused(env: Env) -> None:
    # An HMAC tag keyed with the checkout public key bytes must not pass for an Ed25519 source.
    pub = keys.public_pem(env.kp.ed.public_key())
    forged = FeedbackSigner("checkout", pub).sign_line({"label": "x"}, timestamp=int(NOW))
    _only_rejection(env, forged, "bad-signature", "signs with ed25519")


def test_unknown_source(env: Env) -> None:
    stranger = FeedbackSigner("stranger", env.kp.other)
    _only_rejection(env, env.line(stranger), "unknown-source", "not a feedback source")


def test_hmac_secret_mismatch(env: Env) -> None:
    wrong = FeedbackSigner("web", b"another-secret-of-enough-length")
    _only_rejection(env, env.line(wrong), "bad-signature", "HMAC-SHA256 tag does not match")


def test_hmac_secret_unset_fails_closed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUARD_TEST_WEB_SECRET")
    _only_rejection(env, env.line(env.web), "untrusted-key", "export GUARD_TEST_WEB_SECRET")


def test_stale_and_future_timestamps(env: Env) -> None:
    _only_rejection(env, env.line(env.checkout, ts=NOW - 301), "stale", "tolerance is 300s")
    _only_rejection(env, env.line(env.mobile, ts=NOW + 31), "future", "clock skew allowed is 30s")
    edge = env.ingestor().ingest(
        env.line(env.checkout, ts=NOW - 300) + b"\n" + env.line(env.web, ts=NOW + 30)
    )
    assert len(edge.accepted) == 2
    assert not edge.quarantined


def test_malformed_json_line(env: Env) -> None:
    _only_rejection(env, b'{"id": "x", broken', "malformed", "not valid JSON")


def test_oversized_record(make_env: Callable[..., Env]) -> None:
    env = make_env({"max_record_bytes": 400})
    big = env.checkout.sign_line({"label": "x", "blob": "A" * 500}, timestamp=int(NOW))
    _only_rejection(env, big, "too-large", "the limit is 400")


def test_oversized_batch_quarantined_whole(make_env: Callable[..., Env]) -> None:
    env = make_env({"max_batch_records": 3})
    lines = [env.line(env.checkout, str(i)) for i in range(4)]
    res = env.ingestor().ingest(b"\n".join(lines))
    assert not res.accepted
    assert {e.reason for e in res.quarantined} == {"batch-too-large"}
    assert [e.raw for e in env.qfile.entries()] == lines
    assert not env.into.exists()
    # nothing was claimed: the same records are accepted in batches within the limit
    res2 = env.ingestor().ingest(b"\n".join(lines[:3]))
    assert len(res2.accepted) == 3


def test_replay_across_batches_and_within_a_batch(env: Env) -> None:
    a, b = env.line(env.checkout, "a"), env.line(env.web, "b")
    first = env.ingestor().ingest(a + b"\n" + b + b"\n" + a)
    assert len(first.accepted) == 2
    assert [(e.line, e.reason) for e in first.quarantined] == [(3, "replay")]
    assert "repeats within the batch" in first.quarantined[0].message
    before = _dataset(env)
    second = env.ingestor(now=NOW + 10).ingest(b + b"\n" + a)
    assert not second.accepted
    assert {e.reason for e in second.quarantined} == {"replay"}
    assert "was seen before" in second.quarantined[0].message
    assert _dataset(env) == before


def test_replay_store_kept_for_the_window(env: Env) -> None:
    a = env.line(env.checkout, "a")
    assert len(env.ingestor().ingest(a).accepted) == 1
    # a later batch inside the window purges nothing that could still be fresh
    env.ingestor(now=NOW + 299).ingest(env.line(env.mobile, ts=NOW + 299))
    again = env.ingestor(now=NOW + 299).ingest(a)
    assert [e.reason for e in again.quarantined] == ["replay"]
    # once purged, the record is stale anyway
    env.ingestor(now=NOW + 400).ingest(env.line(env.mobile, "z", ts=NOW + 400))
    late = env.ingestor(now=NOW + 400).ingest(a)
    assert [e.reason for e in late.quarantined] == ["stale"]


def test_quota_per_source(make_env: Callable[..., Env]) -> None:
    env = make_env({"quotas": {"checkout": {"records": 2, "per": "1h"}}})
    res = env.ingestor().ingest(b"\n".join(env.line(env.checkout, str(i)) for i in range(3)))
    assert len(res.accepted) == 2
    assert [e.reason for e in res.quarantined] == ["quota"]
    later = env.ingestor(now=NOW + 60).ingest(
        env.line(env.checkout, ts=NOW + 60) + b"\n" + env.line(env.mobile, ts=NOW + 60)
    )
    assert [a.record.source for a in later.accepted] == ["mobile"]
    assert "quota of 2 records per 3600s" in later.quarantined[0].message


def test_label_skewed_batch_quarantined_whole_with_numbers(make_env: Callable[..., Env]) -> None:
    env = make_env(
        {
            "skew": {
                "baseline": {"ok": 0.8, "fraud": 0.2},
                "max_label_distance": 0.3,
                "min_records": 10,
            }
        }
    )
    normal = [env.line(env.checkout, "ok" if i % 5 else "fraud") for i in range(20)]
    assert len(env.ingestor().ingest(b"\n".join(normal)).accepted) == 20
    before = _dataset(env)
    skewed = [env.line(env.mobile, "fraud") for _ in range(12)] + [env.line(env.web, "ok")]
    res = env.ingestor().ingest(b"\n".join(skewed))
    assert not res.accepted
    assert {e.reason for e in res.quarantined} == {"skew"}
    detail = res.quarantined[0].detail
    assert detail["label_distance"] > 0.3
    assert detail["source_label_distance"]["mobile"] > 0.3
    assert "Jensen–Shannon" in res.quarantined[0].message
    assert _dataset(env) == before
    assert [e.raw for e in env.qfile.entries()] == skewed
    # nothing was claimed: after review, an admin can release a skew-quarantined record
    entry = env.qfile.entries()[0]
    ing = env.ingestor()
    ing.release(
        entry,
        "root-admin",
        lambda tx: env.qfile.set_released(entry.qid, "root-admin", NOW) is not None,
    )
    assert _dataset(env) == before + skewed[0] + b"\n"


def test_source_share_and_volume_spike(make_env: Callable[..., Env]) -> None:
    env = make_env(
        {
            "skew": {
                "max_source_share": 0.7,
                "max_volume_ratio": 3,
                "min_records": 4,
                "min_history": 2,
            }
        }
    )
    for i in range(2):
        batch = [env.line(s, str(i * 10 + j)) for j, s in enumerate([env.checkout, env.mobile] * 2)]
        assert len(env.ingestor().ingest(b"\n".join(batch)).accepted) == 4
    flood = [env.line(env.checkout, str(100 + i)) for i in range(7)] + [env.line(env.mobile, "m")]
    res = env.ingestor().ingest(b"\n".join(flood))
    assert not res.accepted
    msg = res.quarantined[0].message
    assert "sent 87.5% of the batch" in msg
    assert "3.5× its mean of 2.0" in msg
    assert res.quarantined[0].detail["volume_ratio"]["checkout"] == 3.5


def test_quarantine_is_byte_for_byte_even_for_invalid_utf8(env: Env) -> None:
    odd = [b"\xff\xfe garbage \x00", b'  {"id":1}\r', env.line(env.checkout, ts=NOW - 999)]
    res = env.ingestor().ingest(b"\n".join(odd))
    assert [e.raw for e in env.qfile.entries()] == odd
    assert [e.reason for e in res.quarantined] == ["malformed", "malformed", "stale"]
    # the file stores base64 and a digest; a hand edit is detected
    text = env.qfile.path.read_text()
    data = json.loads(text.splitlines()[0])
    assert base64.b64decode(data["raw"]) == odd[0]
    data["raw"] = base64.b64encode(b"edited").decode()
    env.qfile.path.write_text(json.dumps(data) + "\n" + "\n".join(text.splitlines()[1:]) + "\n")
    with pytest.raises(VerificationError, match="do not match their sha256"):
        env.qfile.entries()


def test_release_reverifies(env: Env) -> None:
    good = env.line(env.checkout, "ok")
    rec = json.loads(env.line(env.mobile, "x"))
    rec["payload"]["label"] = "tampered"
    forged = json.dumps(rec).encode()
    stale = env.line(env.web, ts=NOW - 1000)
    env.ingestor().ingest(b"\n".join([forged, stale]))
    entries = {e.reason: e for e in env.qfile.entries()}

    def mark(qid: str) -> Callable[[Tx], bool]:
        return lambda tx: env.qfile.set_released(qid, "root-admin", NOW) is not None

    for reason, fragment in (("bad-signature", "does not verify"), ("stale", "tolerance")):
        with pytest.raises(VerificationError, match="fails re-verification") as exc:
            env.ingestor(now=NOW + 5).release(
                entries[reason], "root-admin", mark(entries[reason].qid)
            )
        assert fragment in exc.value.details[0]
    assert not env.into.exists()
    assert {e.status for e in env.qfile.entries()} == {QUARANTINED}

    # a replay released after the original went in is refused too
    env.ingestor().ingest(good)
    env.ingestor().ingest(good)
    replay = next(e for e in env.qfile.entries() if e.reason == "replay")
    with pytest.raises(VerificationError, match="seen before"):
        env.ingestor().release(replay, "root-admin", mark(replay.qid))
    assert _dataset(env) == good + b"\n"


def test_release_of_a_quota_entry_adds_it_once(make_env: Callable[..., Env]) -> None:
    env = make_env({"quota": {"records": 0}})
    line = env.line(env.web, "ok")
    env.ingestor().ingest(line)
    (entry,) = env.qfile.entries()
    assert entry.reason == "quota"
    rec = env.ingestor(now=NOW + 3600).release(
        entry,
        "root-admin",
        lambda tx: env.qfile.set_released(entry.qid, "root-admin", NOW) is not None,
    )
    assert rec.source == "web"
    assert _dataset(env) == line + b"\n"
    assert env.qfile.entries()[0].status == RELEASED
    assert env.qfile.entries()[0].released_by == "root-admin"


@pytest.mark.parametrize(
    ("extra_yaml", "fragment"),
    [
        ("revoked: [checkout]\n", "is revoked"),
        ("", "not for 'feedback'"),
    ],
)
def test_revoked_or_wrong_purpose_source_key(
    make_env: Callable[..., Env], extra_yaml: str, fragment: str
) -> None:
    env = make_env()
    text = env.policy_path.read_text()
    if not extra_yaml:
        text = text.replace("checkout.pub, purposes: [feedback]", "checkout.pub, purposes: [model]")
    env.policy_path.write_text(text.replace("version: 1\n", "version: 1\n" + extra_yaml))
    from mlflow_guard.core.policy import load_policy

    env.policy = load_policy(env.policy_path)
    res = env.ingestor().ingest(env.line(env.checkout) + b"\n" + env.line(env.mobile))
    assert [a.record.source for a in res.accepted] == ["mobile"]
    assert [e.reason for e in res.quarantined] == ["untrusted-key"]
    assert fragment in res.quarantined[0].message


def test_integer_beyond_json_safe_range_is_malformed(env: Env) -> None:
    rec = json.loads(env.line(env.checkout))
    rec["payload"]["n"] = 2**60
    _only_rejection(env, json.dumps(rec).encode(), "malformed", "RFC 8785")


def test_attestation_covers_the_dataset_as_its_batch_left_it(env: Env, tmp_path: Path) -> None:
    """Another ingest appending between a batch's commit and its attestation does not enter the
    attested digest: it covers the file's committed length right after that batch."""
    import hashlib

    from mlflow_guard.core import intoto
    from mlflow_guard.core.policy import Purpose
    from mlflow_guard.core.trust import TrustStore
    from mlflow_guard.feedback import attest
    from mlflow_guard.feedback.destinations import FileDestination, FileQuarantineSink
    from mlflow_guard.feedback.ingest import Ingestor

    def ingestor(dest: FileDestination) -> Ingestor:
        sink = FileQuarantineSink(env.qfile)
        return Ingestor(env.policy, env.store(), dest, sink, clock=lambda: NOW)

    first, second = FileDestination(env.into), FileDestination(env.into)
    a = ingestor(first).ingest(env.line(env.checkout, "a"))
    after_a = env.into.read_bytes()
    ingestor(second).ingest(env.line(env.mobile, "b"))  # lands before a's attestation
    assert first.size_after == len(after_a) < env.into.stat().st_size

    trust = TrustStore.from_policy(env.policy)
    signer = keys.Signer(env.kp.admin_ds)
    path = attest.write(a, env.into, signer, trust, tmp_path, NOW, first.size_after)
    st, _ = intoto.verify_attestation(
        path.read_bytes(), trust, Purpose.DATASET, attest.PREDICATE_TYPE
    )
    assert st.subject[0].digest == {"sha256": hashlib.sha256(after_a).hexdigest()}
    assert st.predicate["records"] == {"checkout": [a.accepted[0].record.id]}
    with pytest.raises(VerificationError, match="shorter than"):
        attest.file_sha256(env.into, env.into.stat().st_size + 1)
