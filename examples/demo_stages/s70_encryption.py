"""Stage 7: artifacts encrypted at rest; an authorized load works; the raw file is useless."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

from demo_stages._ctx import Context, DemoFailure, guard, run_cli

TITLE = "Encryption at rest: ciphertext on disk, authorized load works, raw file does not unpickle"

LOG = textwrap.dedent("""\
    import sys
    from pathlib import Path

    import mlflow
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    work = Path(sys.argv[1])
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    exp = mlflow.create_experiment("encrypted", artifact_location=f"guard+file://{work / 'store'}")
    x, y = load_breast_cancer(return_X_y=True)
    model = LogisticRegression(max_iter=5000).fit(x, y)
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="pickle")
    loaded = mlflow.sklearn.load_model(info.model_uri)
    same = bool((loaded.predict(x[:20]) == model.predict(x[:20])).all())
    print(f"logged {info.model_uri}; authorized load predicts identically: {same}")
    sys.exit(0 if same else 1)
""")


def run(ctx: Context) -> None:
    """Generate a KEK, log a model into ``guard+file://``, show ciphertext, load, try raw."""
    work = ctx.root / "encryption"
    work.mkdir()
    kek = work / "kek.json"
    run_cli(guard("kek", "generate", "--out", str(kek)), expect=0)
    env = {**os.environ, "MLFLOW_GUARD_KEK_KEYSET": str(kek)}
    script = work / "log_encrypted.py"
    script.write_text(LOG)
    print("$ python log_encrypted.py   (plain MLflow code; artifact location guard+file://...)")
    proc = subprocess.run(
        [sys.executable, str(script), str(work)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    print("  " + proc.stdout.strip().replace("\n", "\n  "))
    if proc.returncode != 0:
        raise DemoFailure(f"logging/loading through the encrypted store failed:\n{proc.stderr}")
    pkl = next(Path(work / "store").rglob("model.pkl"))
    head = pkl.read_bytes()[:16]
    print(f"on disk: {pkl.relative_to(ctx.root)} starts with {head!r} (ciphertext container)")
    try:
        pickle.loads(pkl.read_bytes())
    except Exception as e:  # any failure is the expected outcome here
        print(f"pickle.loads(raw file) fails: {type(e).__name__}: {e}")
    else:
        raise DemoFailure("the raw artifact unpickled: it is not encrypted")
    run_cli(guard("kek", "status", str(work / "store")), expect=0, env=env)
    print("\nRotating the KEK re-wraps every data key (the ciphertext itself is not rewritten):")
    run_cli(guard("kek", "rotate", str(work / "store")), expect=0, env=env)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""\
        import mlflow
        mlflow.set_tracking_uri("sqlite:///{work / "mlflow.db"}")
        run = mlflow.search_runs(experiment_names=["encrypted"], output_format="list")[0]
        m = mlflow.sklearn.load_model(f"runs:/{{run.info.run_id}}/model")
        print("after rotation the model still loads:", type(m).__name__)
    """),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    print("  " + proc.stdout.strip())
    if proc.returncode != 0:
        raise DemoFailure(f"load after rotation failed:\n{proc.stderr}")
    no_key = {k: v for k, v in env.items() if k != "MLFLOW_GUARD_KEK_KEYSET"}
    code = (
        "from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository\n"
        f"repo = get_artifact_repository('guard+file://{pkl.parent}')\n"
        f"repo.download_artifacts('model.pkl', '{work}')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=no_key, capture_output=True, text=True, check=False
    )
    reason = [ln for ln in proc.stderr.splitlines() if "MLFLOW_GUARD_KEK_KEYSET" in ln]
    if proc.returncode == 0 or not reason:
        raise DemoFailure(f"a download without the KEK did not fail clearly: {proc.stderr[-800:]}")
    line = reason[0][reason[0].find("mlflow-guard refused") :].strip()
    print(f"without the KEK the download is refused: {line[:160]}")
