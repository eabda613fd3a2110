"""Stage 3: an ordinary MLflow training run gets lineage, a signed model, and verified loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from demo_stages._ctx import Context, DemoFailure, run_cli

TITLE = "Lineage: a training run's lineage, automatic signing, tampered copy refused on load"

TRAIN = textwrap.dedent("""\
    import json, shutil, sys
    from pathlib import Path

    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import mlflow_guard
    from mlflow_guard.core.errors import GuardError

    work = Path(sys.argv[1])
    mlflow.set_tracking_uri(f"guard+sqlite:///{work / 'mlflow.db'}")
    name = "fraud-demo"
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=str(work / "artifacts"))
    mlflow.set_experiment(name)
    x, y = load_breast_cancer(return_X_y=True)
    with mlflow.start_run() as run:  # plain MLflow code from here on
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
        mlflow.log_metric("accuracy", float(model.score(x, y)))
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name="fraud-demo",
            pip_requirements=["scikit-learn"], serialization_format="cloudpickle",
        )
    client = mlflow.MlflowClient()
    tags = client.get_run(run.info.run_id).data.tags
    lineage = {k: v for k, v in sorted(tags.items()) if k.startswith("guard.lineage.")}
    logged = client.get_logged_model(info.model_id)
    version = client.get_model_version("fraud-demo", "1")
    out = {
        "lineage": lineage,
        "signing": logged.tags.get("guard.signing.status"),
        "version_tags": {k: v for k, v in version.tags.items() if k.startswith("mlflow_guard.")},
    }
    model = mlflow_guard.load_model("models:/fraud-demo/1")
    out["loaded"] = type(model).__name__
    src = Path(logged.artifact_location.removeprefix("file://"))
    copy = work / "tampered-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(src, copy)
    with (copy / "model.pkl").open("ab") as f:
        f.write(b"backdoor")
    try:
        mlflow_guard.load_model(str(copy))
        out["tampered"] = "LOADED (bad)"
    except GuardError as e:
        out["tampered"] = e.diagnostics()
    print(json.dumps(out))
    """)


def _repo(ctx: Context) -> Path:
    repo = ctx.state.get("dvc_repo")
    if repo and Path(repo, ".git").is_dir():
        return Path(repo)
    repo = ctx.root / "lineage-repo"
    repo.mkdir(parents=True, exist_ok=True)
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "init"]):
        run_cli(
            ["git", "-c", "user.name=demo", "-c", "user.email=demo@example.com", *args],
            expect=0,
            cwd=repo,
        )
    return repo


def run(ctx: Context) -> None:
    """Train in the git+DVC repo with plain MLflow code; show lineage, signature, refusal."""
    work = ctx.root / "s30"
    work.mkdir(parents=True, exist_ok=True)
    script = work / "train.py"
    script.write_text(TRAIN)
    repo = _repo(ctx)
    keys_dir = Path(ctx.state["keys"])
    env = {
        **os.environ,
        "MLFLOW_GUARD_SIGNING_KEY": str(keys_dir / "ci.key"),
        "MLFLOW_GUARD_POLICY": str(Path(ctx.state["policy"]).resolve()),
    }
    print(f"$ cd {repo} && MLFLOW_GUARD_SIGNING_KEY=keys/ci.key python train.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(work)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise DemoFailure(f"training run failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print("lineage tags recorded at start_run:")
    for k, v in out["lineage"].items():
        print(f"  {k} = {v if len(v) < 90 else v[:87] + '...'}")
    print(f"logged model: {out['signing']}")
    print(f"registered version 1 (embedded guard+sqlite gate): {out['version_tags']}")
    print(f"mlflow_guard.load_model('models:/fraud-demo/1') -> {out['loaded']}")
    print("loading a tampered copy:")
    for line in out["tampered"].splitlines():
        print(f"  {line}")
    git_commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    if out["lineage"].get("guard.lineage.git.commit") != git_commit:
        raise DemoFailure("lineage commit does not match git rev-parse HEAD")
    if not str(out["signing"]).startswith("signed by"):
        raise DemoFailure(f"the model was not signed: {out['signing']}")
    if "mlflow_guard.root_sha256" not in out["version_tags"]:
        raise DemoFailure("the registration gate did not record the verified digest")
    if "changed: model.pkl" not in out["tampered"]:
        raise DemoFailure("the tampered copy was not refused precisely")
    print("the tampered copy was refused before anything was unpickled")
