"""Benchmark: feedback records verified per second by ingestion vs the raw primitive.

For Ed25519, ECDSA P-256 and HMAC-SHA256: (a) the raw ``cryptography`` / ``hmac`` verify over
pre-computed canonical messages in a tight loop; (b) the ingestion check per record (size,
JSON parse, shape, RFC 8785 canonicalization, source lookup, signature, freshness); (c) the
whole pipeline (``Ingestor.ingest``: plus replay-store claim in SQLite, quota/skew, append to the
dataset file, fsync). Then collector throughput: 1,000-record batches POSTed to the Flask
blueprint (test client, SQLite guard database). All measured in this one run.

Run: ``.venv/bin/python benchmarks/bench_feedback.py [--records N]``. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mlflow_guard.core import feedback_records as fr
from mlflow_guard.core import keys
from mlflow_guard.core.feedback import RecordChecker, SourceKeys
from mlflow_guard.core.policy import load_policy
from mlflow_guard.feedback import FeedbackSigner
from mlflow_guard.feedback.destinations import FileDestination, FileQuarantineSink
from mlflow_guard.feedback.ingest import Ingestor
from mlflow_guard.feedback.quarantine import QuarantineFile
from mlflow_guard.feedback.store import FeedbackStore

SECRET = b"bench-secret-0123456789abcdef"


def _best_interleaved(fns: list[Callable[[], None]], rounds: int = 5) -> list[float]:
    """Best time of each function over ``rounds`` rounds, run alternately (fair under load)."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _setup(root: Path) -> tuple[Path, dict[str, FeedbackSigner], dict[str, keys.PrivateKey]]:
    pk = {"ed": keys.generate(keys.Algorithm.ED25519), "ec": keys.generate()}
    for n, k in pk.items():
        (root / f"{n}.pub").write_bytes(keys.public_pem(k.public_key()))
    (root / "guard.yaml").write_text(
        "version: 1\nkeys:\n"
        "  - {id: ed, public_key: ed.pub, purposes: [feedback]}\n"
        "  - {id: ec, public_key: ec.pub, purposes: [feedback]}\n"
        "feedback:\n  sources: [ed, ec]\n"
        "  hmac_sources: [{id: web, secret_env: BENCH_FEEDBACK_SECRET}]\n"
        "  tolerance: 1h\n  max_batch_records: 100000\n  max_batch_bytes: 100000000\n"
    )
    os.environ["BENCH_FEEDBACK_SECRET"] = SECRET.decode()
    signers = {
        "ed": FeedbackSigner("ed", pk["ed"]),
        "ec": FeedbackSigner("ec", pk["ec"]),
        "web": FeedbackSigner("web", SECRET),
    }
    return root / "guard.yaml", signers, pk


def _payload(i: int) -> dict[str, object]:
    return {"prediction_id": f"pred-{i:08d}", "label": "fraud" if i % 7 == 0 else "ok",
            "score": round(i % 100 / 100, 2), "model": "fraud-detector", "version": 3}  # fmt: skip


def _raw_loop(
    name: str, pk: dict[str, keys.PrivateKey], msgs: list[tuple[bytes, bytes]]
) -> Callable[[], None]:
    if name == "ed":
        pub = pk["ed"].public_key()
        assert isinstance(pub, ed25519.Ed25519PublicKey)

        def ed_loop() -> None:
            for m, s in msgs:
                pub.verify(s, m)

        return ed_loop
    if name == "ec":
        pubk = pk["ec"].public_key()
        assert isinstance(pubk, ec.EllipticCurvePublicKey)
        algo = ec.ECDSA(hashes.SHA256())

        def ec_loop() -> None:
            for m, s in msgs:
                pubk.verify(s, m, algo)

        return ec_loop

    def hmac_loop() -> None:
        for m, s in msgs:
            hmac.compare_digest(hmac.new(SECRET, m, hashlib.sha256).digest(), s)

    return hmac_loop


def _check_loop(checker: RecordChecker, lines: list[bytes], now: float) -> Callable[[], None]:
    def loop() -> None:
        for x in lines:
            out = checker.check(x, now)
            assert isinstance(out, fr.Record)

    return loop


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=3000)
    args = ap.parse_args()
    n = args.records
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        policy_path, signers, pk = _setup(root)
        policy = load_policy(policy_path)
        checker = RecordChecker(policy.feedback, SourceKeys.from_policy(policy))
        now = time.time()
        for name, label in (("ed", "Ed25519"), ("ec", "ECDSA P-256"), ("web", "HMAC-SHA256")):
            signer = signers[name]
            lines = [signer.sign_line(_payload(i), timestamp=int(now)) for i in range(n)]
            recs = [fr.parse_record(x) for x in lines]
            msgs = [(r.message(), r.sig) for r in recs]
            raw = _raw_loop(name, pk, msgs)
            check = _check_loop(checker, lines, now)
            t_raw, t_chk = _best_interleaved([raw, check])
            data = b"\n".join(lines)
            times = []
            for r in range(2):
                store = FeedbackStore(f"sqlite:///{root / f'{name}{r}.db'}")
                qf = QuarantineFile(root / f"{name}{r}.q.jsonl")
                dest = FileDestination(root / f"{name}{r}.jsonl")
                ing = Ingestor(policy, store, dest, FileQuarantineSink(qf))
                t0 = time.perf_counter()
                res = ing.ingest(data)
                times.append(time.perf_counter() - t0)
                assert len(res.accepted) == n, res.summary()["rejections"][:2]
                store.dispose()
            t_pipe = min(times)
            rows.append((label, n / t_raw, n / t_chk, n / t_pipe))

        # collector throughput: 1,000-record batches through the blueprint
        from flask import Flask

        from mlflow_guard.core.access import Principal
        from mlflow_guard.feedback.http import PREFIX, create_blueprint

        store = FeedbackStore(f"sqlite:///{root / 'server.db'}")
        app = Flask("bench")
        app.register_blueprint(create_blueprint(policy, store, register_routes=False,
                                                principal=lambda: Principal("bench")))  # fmt: skip
        client = app.test_client()
        batches = []
        for b in range(8):
            ls = [signers[("ed", "ec", "web")[i % 3]].sign_line(_payload(b * 1000 + i))
                  for i in range(1000)]  # fmt: skip
            batches.append(b"\n".join(ls))
        t0 = time.perf_counter()
        for body in batches:
            resp = client.post(PREFIX, data=body, content_type="application/x-ndjson")
            assert resp.status_code == 200
            assert resp.get_json()["accepted"] == 1000
        t_srv = time.perf_counter() - t0
        store.dispose()

    print(
        f"Feedback verification, {n} records per algorithm; raw and check interleaved, "
        "best of 5 (shared 2-core machine)\n"
    )
    print("| algorithm | raw primitive (rec/s) | ingestion check (rec/s) | ratio | "
          "added µs/record | full pipeline incl. SQLite + file (rec/s) | ratio |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, r_raw, r_chk, r_pipe in rows:
        added = (1 / r_chk - 1 / r_raw) * 1e6
        print(f"| {label} | {r_raw:,.0f} | {r_chk:,.0f} | {r_chk / r_raw:.0%} | {added:.0f} | "
              f"{r_pipe:,.0f} | {r_pipe / r_raw:.0%} |")  # fmt: skip
    print(f"\nCollector (Flask test client, SQLite, mixed Ed25519/ECDSA/HMAC): "
          f"{len(batches)} batches of 1,000 records in {t_srv:.2f}s = "
          f"{len(batches) * 1000 / t_srv:,.0f} records/s, {t_srv / len(batches) * 1000:.0f} ms "
          "per batch")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
