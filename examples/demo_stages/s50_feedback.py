"""Stage 5: feedback-data authentication (OWASP ML08): two sources, a forgery and a replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from demo_stages._ctx import Context, DemoFailure, run_cli

TITLE = "Feedback: signed records from two sources; a forgery and a replay land in quarantine"

WEB_SECRET = "whsec_ZGVtby13ZWItc2VydmljZS1zaGFyZWQtc2VjcmV0"


def _dvc_guard(*args: str) -> list[str]:
    return [sys.executable, "-c", "from dvc_hooks.cli import main; raise SystemExit(main())", *args]


def _guard(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlflow_guard.cli", *args]


def run(ctx: Context) -> None:
    """Sign feedback at two sources, ingest two batches, inspect quarantine and the dataset."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from feedback_webservice import create_app

    from mlflow_guard.feedback import FeedbackSigner

    keys_dir: Path = ctx.state["keys"]
    base = yaml.safe_load(Path(ctx.state["policy"]).read_text())
    base["feedback"] = {
        "sources": ["checkout"],
        "hmac_sources": [{"id": "web", "secret_env": "FEEDBACK_WEB_SECRET"}],
        "tolerance": "300s",
        "clock_skew": "30s",
        "quota": {"records": 1000, "per": "1h"},
        "skew": {"baseline": {"ok": 0.8, "fraud": 0.2}, "max_label_distance": 0.5},
        "datasets": ["data/feedback.jsonl"],
    }
    policy = ctx.root / "guard-feedback.yaml"
    policy.write_text(yaml.safe_dump(base, sort_keys=False))
    print(f"policy copy with a second (HMAC) source: {policy.name}")
    env = {**os.environ, "FEEDBACK_WEB_SECRET": WEB_SECRET}
    os.environ["FEEDBACK_WEB_SECRET"] = WEB_SECRET

    work = ctx.root / "feedback"
    work.mkdir(exist_ok=True)
    checkout = FeedbackSigner("checkout", keys_dir / "checkout.key")
    lines = [
        checkout.sign_line({"prediction_id": f"p-{i}", "label": "fraud" if i % 4 == 0 else "ok"})
        for i in range(6)
    ]
    outbox = work / "web-outbox.jsonl"
    client = create_app(str(outbox)).test_client()
    for i, label in enumerate(["ok", "ok", "fraud", "ok"]):
        resp = client.post("/feedback", json={"prediction_id": f"w-{i}", "label": label})
        if resp.status_code != 201:
            raise DemoFailure(f"web service refused feedback: {resp.get_json()}")
    web_lines = outbox.read_bytes().splitlines()
    print(f"checkout signed {len(lines)} records (ECDSA P-256); the web service signed "
          f"{len(web_lines)} (HMAC-SHA256, Standard Webhooks)")  # fmt: skip

    forged = json.loads(lines[1])
    forged["payload"]["label"] = "fraud"
    batch1 = work / "batch1.jsonl"
    batch1.write_bytes(b"\n".join([*lines, *web_lines, json.dumps(forged).encode()]) + b"\n")
    print("batch 1: 10 authentic records + 1 forged (label flipped after signing)")

    dataset = ctx.root / "data" / "feedback.jsonl"
    db = f"sqlite:///{ctx.root / 'guard.db'}"
    common = ["--into", str(dataset), "--policy", str(policy), "--db", db]
    sign_key = ["--key", str(keys_dir / "data-ci.key")]
    run_cli(_guard("feedback", "ingest", str(batch1), *common, *sign_key), expect=1, env=env)
    r1 = _quarantine(common)
    if len(dataset.read_bytes().splitlines()) != 10 or [e["reason"] for e in r1] != [
        "bad-signature"
    ]:
        raise DemoFailure(f"unexpected batch 1 result: {r1}")

    time.sleep(1)
    batch2 = work / "batch2.jsonl"
    fresh = checkout.sign_line({"prediction_id": "p-10", "label": "ok"})
    batch2.write_bytes(fresh + b"\n" + lines[0] + b"\n")
    print("\nbatch 2: 1 new record + a replay of batch 1's first record")
    run_cli(_guard("feedback", "ingest", str(batch2), *common, *sign_key), expect=1, env=env)
    r2 = _quarantine(common)
    if [e["reason"] for e in r2] != ["bad-signature", "replay"]:
        raise DemoFailure(f"unexpected batch 2 result: {r2}")

    run_cli(_guard("feedback", "quarantine", "list", "--into", str(dataset)), expect=0)
    stored = dataset.read_bytes().splitlines()
    if len(stored) != 11 or json.dumps(forged).encode() in stored:
        raise DemoFailure("the dataset should hold exactly the 11 authentic, unique records")
    print(f"dataset {dataset.relative_to(ctx.root)}: {len(stored)} records; quarantine: 2")

    admin = next(iter(base.get("roles", {}).get("reviewer", ["bob"])))
    qid = r1[0]["qid"]
    print(f"\n{admin} (a reviewer, not an admin) tries to release the forgery:")
    run_cli(_guard("feedback", "quarantine", "release", qid, "--as", admin, *common), expect=1)

    print("\nThe pre-commit hook re-verifies every record (a git repo holding the dataset):")
    repo = ctx.root / "feedback-repo"
    (repo / "data").mkdir(parents=True, exist_ok=True)
    run_cli(["git", "init", "-q", str(repo)], expect=0)
    copy = repo / "data" / "feedback.jsonl"
    copy.write_bytes(dataset.read_bytes())
    hook = _dvc_guard("feedback-check", "data/feedback.jsonl", "--repo", str(repo),
                      "--policy", str(policy))  # fmt: skip
    run_cli(hook, expect=0, env=env, cwd=repo)
    copy.write_bytes(copy.read_bytes().replace(b'"label":"ok"', b'"label":"fraud"', 1))
    print("after hand-editing one label in the dataset:")
    run_cli(hook, expect=1, env=env, cwd=repo)
    attestations = sorted((dataset.parent / "feedback.jsonl.batches").glob("*.intoto.json"))
    if len(attestations) != 2:
        raise DemoFailure(f"expected two feedback-batch attestations, found {attestations}")
    ctx.state["feedback"] = {
        "dataset": dataset,
        "policy": policy,
        "attestations": attestations,
        "batches": [p.name.split(".")[0] for p in attestations],
    }
    print("feedback-batch attestations (in-toto, signed by data-ci):")
    for p in attestations:
        print(f"  {p.relative_to(ctx.root)}")
    _retrain(ctx, dataset)


def _retrain(ctx: Context, dataset: Path) -> None:
    """A retraining run over the DVC-tracked feedback dataset names the batches in its lineage."""
    import shutil

    print("\nRetraining: an MLflow run in a git+DVC repo holding the accepted feedback data")
    repo = ctx.root / "retrain-repo"
    (repo / "data").mkdir(parents=True)
    dvc = str(Path(sys.executable).parent / "dvc")
    run_cli(["git", "init", "-q", str(repo)], expect=0)
    run_cli([dvc, "init", "-q"], expect=0, cwd=repo)
    shutil.copyfile(dataset, repo / "data" / "feedback.jsonl")
    shutil.copytree(dataset.parent / "feedback.jsonl.batches",
                    repo / "data" / "feedback.jsonl.batches")  # fmt: skip
    run_cli([dvc, "add", "-q", "data/feedback.jsonl"], expect=0, cwd=repo)
    code = (
        "import mlflow\n"
        f"mlflow.set_tracking_uri('sqlite:///{ctx.root / 'retrain.db'}')\n"
        "with mlflow.start_run() as run:\n"
        "    pass\n"
        "tags = mlflow.get_run(run.info.run_id).data.tags\n"
        "for k in ('guard.lineage.dvc.datasets', 'guard.lineage.feedback.batches'):\n"
        "    print(k, '=', tags.get(k))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                          check=False)  # fmt: skip
    print("  " + proc.stdout.strip().replace("\n", "\n  "))
    if proc.returncode != 0 or "feedback.jsonl@" not in proc.stdout:
        raise DemoFailure(f"the retraining run's lineage does not name the batches:\n{proc.stderr}")


def _quarantine(common: list[str]) -> list[dict[str, object]]:
    proc = subprocess.run(
        _guard("feedback", "quarantine", "list", *common[:2], "--json"),
        capture_output=True,
        text=True,
        check=True,
    )
    entries: list[dict[str, object]] = json.loads(proc.stdout)["entries"]
    return entries
