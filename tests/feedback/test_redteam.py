"""Hostile feedback batches: whatever a line holds, the batch is judged line by line.

Each bad line is quarantined byte-for-byte with its reason and the good lines still go in; no
line may crash the ingestion (that would drop the whole batch) or vanish silently.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from mlflow_guard.cli import run
from tests.feedback.conftest import Env


def _ingest(
    env: Env, lines: list[bytes], capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, object], str]:
    """``mlflow-guard feedback ingest`` of ``lines`` (one batch file); (rc, JSON out, stderr)."""
    batch = env.root / "in.jsonl"
    batch.write_bytes(b"\n".join(lines) + b"\n")
    rc = run(["feedback", "ingest", str(batch), "--into", str(env.into),
              "--policy", str(env.policy_path), "--db", env.db, "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    return rc, json.loads(out) if out.strip().startswith("{") else {}, err


def _dataset(env: Env) -> bytes:
    return env.into.read_bytes() if env.into.exists() else b""


def _good(env: Env) -> bytes:
    return env.line(env.checkout, "ok", ts=time.time())


@pytest.mark.parametrize("alg", [{}, [], ["ed25519"]])
def test_signature_alg_of_the_wrong_type_is_quarantined_not_a_crash(
    env: Env, capsys: pytest.CaptureFixture[str], alg: object
) -> None:
    good = _good(env)
    rec = json.loads(good)
    rec["id"] = "other-id"
    rec["signature"]["alg"] = alg
    bad = json.dumps(rec).encode()
    rc, out, err = _ingest(env, [good, bad], capsys)
    assert rc == 1, err
    assert out["accepted"] == 1
    (rej,) = out["rejections"]  # type: ignore[misc]
    assert (rej["line"], rej["reason"]) == (2, "malformed")
    assert "signature.alg must be one of" in rej["message"]
    assert _dataset(env) == good + b"\n"
    assert [e.raw for e in env.qfile.entries()] == [bad]


def test_deeply_nested_payloads_are_quarantined_not_a_crash(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nesting near the interpreter's recursion limit: the JSON decoder may accept a depth
    the RFC 8785 encoder (recursive Python) cannot canonicalize. A range of depths crosses
    that boundary wherever this test's stack starts; ``1e300`` forces the general encoder."""
    good = _good(env)
    now = int(time.time())
    bad = [
        (
            f'{{"id":"deep-{d}","source":"checkout","timestamp":{now},'
            f'"payload":{{"x":{"[" * d}1e300{"]" * d}}},'
            '"signature":{"alg":"ed25519","sig":"AA=="}}'
        ).encode()
        for d in range(700, 1000)
    ]
    rc, out, err = _ingest(env, [good, *bad], capsys)
    assert rc == 1, err
    assert out["accepted"] == 1
    rejections = out["rejections"]
    assert isinstance(rejections, list)
    assert len(rejections) == len(bad)
    assert {r["reason"] for r in rejections} <= {"malformed", "bad-signature"}
    assert _dataset(env) == good + b"\n"
    assert [e.raw for e in env.qfile.entries()] == bad


@pytest.mark.parametrize(
    ("field", "fragment"), [("id", "id must be"), ("source", "source must be")]
)
def test_id_or_source_with_a_trailing_newline_is_malformed(
    env: Env, capsys: pytest.CaptureFixture[str], field: str, fragment: str
) -> None:
    """``$`` in a regex also matches before a final newline: ``"abc\\n"`` passed as an id, and
    the fast canonical form then embedded a raw newline (not RFC 8785)."""
    from mlflow_guard.feedback import FeedbackSigner

    good = _good(env)
    source = "checkout\n" if field == "source" else "checkout"
    rid = "abc\n" if field == "id" else "abc"
    rec = FeedbackSigner(source, env.kp.ed).sign({"label": "x"}, record_id=rid)
    bad = json.dumps(rec).encode()
    rc, out, err = _ingest(env, [good, bad], capsys)
    assert rc == 1, err
    assert out["accepted"] == 1
    (rej,) = out["rejections"]  # type: ignore[misc]
    assert (rej["line"], rej["reason"]) == (2, "malformed")
    assert fragment in rej["message"]
    assert _dataset(env) == good + b"\n"
    assert [e.raw for e in env.qfile.entries()] == [bad]


def test_lines_of_non_json_whitespace_are_quarantined_not_skipped(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only JSON whitespace (space, tab, CR) makes a line blank; ``bytes.strip`` also dropped
    form feeds and vertical tabs, so such a line was neither accepted nor quarantined."""
    from dvc_hooks.cli import main as dvc_guard

    good = _good(env)
    rc, out, err = _ingest(env, [good, b"\x0c", b" \x0b\t", b"", b" \t\r"], capsys)
    assert rc == 1, err
    assert out["accepted"] == 1
    assert [(r["line"], r["reason"]) for r in out["rejections"]] == [  # type: ignore[union-attr]
        (2, "malformed"),
        (3, "malformed"),
    ]
    assert _dataset(env) == good + b"\n"
    assert [e.raw for e in env.qfile.entries()] == [b"\x0c", b" \x0b\t"]

    # the feedback-check hook names such a line in a stored dataset too
    env.into.write_bytes(good + b"\n\x0c\n\n")
    args = ["feedback-check", "data/feedback.jsonl", "--repo", str(env.root),
            "--policy", str(env.policy_path)]  # fmt: skip
    subprocess.run(["git", "init", "-q", str(env.root)], check=True)
    assert dvc_guard(args) == 1
    assert "data/feedback.jsonl:2: malformed" in capsys.readouterr().err


def test_crlf_line_separators_and_missing_final_newline_keep_records_intact(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """Records are split on LF only: CRLF endings, a CR between tokens and U+2028/U+2029 in
    a string (line breaks to ``str.splitlines``) stay inside their record; the dataset holds
    the accepted bytes exactly and the feedback-check hook verifies it line by line."""
    from dvc_hooks.cli import main as dvc_guard

    now = time.time()
    sep = env.checkout.sign({"label": "a\u2028b\u2029c"}, timestamp=int(now))
    lines = [
        json.dumps(sep, ensure_ascii=False).encode() + b"\r",
        env.line(env.mobile, "ok", ts=now).replace(b',"source"', b',\r"source"') + b"\r",
        env.line(env.web, "ok", ts=now),
    ]
    assert b"\xe2\x80\xa8" in lines[0]
    batch = env.root / "in.jsonl"
    batch.write_bytes(b"\n".join(lines))  # no final newline
    rc = run(["feedback", "ingest", str(batch), "--into", str(env.into),
              "--policy", str(env.policy_path), "--db", env.db, "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, out
    assert out["accepted"] == 3
    assert _dataset(env) == b"".join(line + b"\n" for line in lines)
    subprocess.run(["git", "init", "-q", str(env.root)], check=True)
    assert dvc_guard(["feedback-check", "--repo", str(env.root),
                      "--policy", str(env.policy_path)]) == 0  # fmt: skip
