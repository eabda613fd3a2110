"""Stage 2: a git + DVC repository whose datasets are signed and validated by blocking hooks."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path

from demo_stages._ctx import Context, DemoFailure, run_cli

TITLE = "Datasets: signed DVC data, blocking hooks, a poisoned commit stopped (ML02)"


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "GIT_AUTHOR_NAME": "demo",
        "GIT_AUTHOR_EMAIL": "demo@example.org",
        "GIT_COMMITTER_NAME": "demo",
        "GIT_COMMITTER_EMAIL": "demo@example.org",
        "DVC_NO_ANALYTICS": "1",
    }


def run(ctx: Context) -> None:
    """Sign a dataset, commit it through the hooks, then try to commit flipped labels."""
    from sklearn.datasets import load_breast_cancer

    env = _env()
    repo = ctx.root / "dvc-repo"
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "data").mkdir(parents=True)
    keys_dir = Path(ctx.state["keys"]).resolve()
    key = keys_dir / "data-ci.key"

    def sh(*args: str, expect: int = 0) -> str:
        proc = run_cli(list(args), expect=expect, cwd=repo, env=env)
        return proc.stdout + proc.stderr

    sh("git", "init", "-q", "-b", "main")
    sh("dvc", "init", "-q")
    (repo / "guard.yaml").write_text(
        textwrap.dedent(f"""\
        version: 1
        keys:
          - {{id: data-ci, public_key: {keys_dir / "data-ci.pub"}, purposes: [dataset]}}
        datasets:
          signers: [data-ci]
          validate:
            - path: data/train.csv
              label_column: target
              max_label_shift: 0.05
              max_psi: 0.1
              max_duplicate_share: 0.01
              max_changed_share: 0.05
        """)
    )
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(repo / "data" / "train.csv", index=False)
    shares = frame.target.value_counts(normalize=True).round(3).to_dict()
    print(f"dataset: {len(frame)} rows, label shares {shares}")

    sh("dvc", "add", "-q", "data/train.csv")
    sh("dvc", "install")  # DVC's own hooks (they never block) ...
    sh("dvc-guard", "install")  # ... kept and chained by ours, which do block
    sh("dvc-guard", "sign", "--key", str(key))
    sh("git", "add", "-A")
    sh("git", "commit", "-q", "-m", "signed training data")
    sh("dvc-guard", "status")

    print("\nPoisoning: flip the label of 10% of the rows (benign -> malignant), re-add, re-sign")
    rng_rows = frame[frame.target == 1].sample(n=len(frame) // 10, random_state=0).index
    poisoned = frame.copy()
    poisoned.loc[rng_rows, "target"] = 0
    poisoned.to_csv(repo / "data" / "train.csv", index=False)
    sh("dvc", "add", "-q", "data/train.csv")
    print("First without re-signing: the signature no longer matches, the commit is blocked")
    sh("git", "add", "-A")
    out = sh("git", "commit", "-m", "poisoned, unsigned", expect=1)
    if "signs another version" not in out:
        raise DemoFailure("unsigned data change was not reported")
    print("Then signed with a valid key (a compromised CI, say): validation still blocks it")
    sh("dvc-guard", "sign", "--key", str(key), "data/train.csv.dvc")
    sh("git", "add", "-A")
    out = sh("git", "commit", "-m", "poisoned, signed", expect=1)
    if "max_label_shift" not in out or "max_changed_share" not in out:
        raise DemoFailure("validation did not report the label shift with numbers")
    head = sh("git", "log", "--oneline")
    if "poisoned" in head:
        raise DemoFailure("the poisoned commit went in")

    print("\nRestore the signed data; the repository is clean again")
    sh("git", "reset", "-q", "--hard")
    sh("dvc", "checkout", "-q", "-f")
    sh("dvc-guard", "verify")
    ctx.state["dvc_repo"] = repo
