"""Stage 1: keys, a policy, a real scikit-learn model saved by MLflow, sign, verify, tamper."""

from __future__ import annotations

import json
import textwrap

from demo_stages._ctx import Context, DemoFailure, guard, run_cli

TITLE = "Signing: train, save with MLflow, sign (OMS v1.0), verify, tamper"


def run(ctx: Context) -> None:
    """Generate keys and a policy, train and save a model, sign it, verify, tamper, re-verify."""
    import mlflow.sklearn
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keys_dir = ctx.root / "keys"
    for purpose, name in [
        ("model", "ci"),
        ("dataset", "data-ci"),
        ("approval", "bob"),
        ("approval", "carol"),
        ("feedback", "checkout"),
        ("audit", "server"),
    ]:
        run_cli(
            guard("keys", "generate", "--purpose", purpose, "--name", name, "--out", str(keys_dir)),
            expect=0,
        )
    policy = ctx.root / "guard.yaml"
    policy.write_text(
        textwrap.dedent("""\
        version: 1
        keys:
          - {id: ci, public_key: keys/ci.pub, purposes: [model]}
          - {id: data-ci, public_key: keys/data-ci.pub, purposes: [dataset]}
          - {id: bob, public_key: keys/bob.pub, purposes: [approval]}
          - {id: carol, public_key: keys/carol.pub, purposes: [approval]}
          - {id: checkout, public_key: keys/checkout.pub, purposes: [feedback]}
          - {id: server, public_key: keys/server.pub, purposes: [audit]}
        roles: {data-scientist: [alice], reviewer: [bob, carol]}
        access:
          - {role: data-scientist, allow: [read, log, register], experiments: "*",
             models: "fraud-*"}
          - {role: reviewer, allow: [read, approve], models: "*"}
        registry:
          require_signature: true
          protected:
            - {alias: production, approvals: 2, approver_roles: [reviewer], approval_ttl: 7d,
               gates: {metrics: {accuracy: ">= 0.9"}}}
        datasets: {signers: [data-ci]}
        feedback: {sources: [checkout], tolerance: 300s}
        storage: {database_uri: "sqlite:///guard.db"}
        """)
    )
    ctx.state.update(policy=policy, keys=keys_dir)
    run_cli(guard("policy", "check", str(policy)), expect=0)

    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(xtr, ytr)
    acc = float(model.score(xte, yte))
    print(f"trained LogisticRegression on breast-cancer data: test accuracy {acc:.3f}")
    model_dir = ctx.root / "model"
    mlflow.sklearn.save_model(model, str(model_dir))
    ctx.state.update(model_dir=model_dir, accuracy=acc)

    run_cli(guard("sign", str(model_dir), "--key", str(keys_dir / "ci.key")), expect=0)
    run_cli(guard("verify", str(model_dir), "--policy", str(policy)), expect=0)

    pkl = next(p for p in (model_dir / "model.skops", model_dir / "model.pkl") if p.exists())
    print(f"\nTampering: append bytes to {pkl.name}, add a file, then verify again")
    with pkl.open("ab") as f:
        f.write(b"\x00tampered")
    (model_dir / "backdoor.py").write_text("import os\n")
    proc = run_cli(guard("verify", str(model_dir), "--policy", str(policy), "--json"), expect=1)
    report = json.loads(proc.stdout)
    if report["changed"] != [pkl.name] or report["added"] != ["backdoor.py"]:
        raise DemoFailure(f"unexpected verification report: {report}")
    print(f"verification failed precisely: changed {pkl.name}, added backdoor.py")
    (model_dir / "backdoor.py").unlink()
    pkl.write_bytes(pkl.read_bytes()[: -len(b"\x00tampered")])
    run_cli(guard("verify", str(model_dir), "--policy", str(policy)), expect=0)
