"""dvc-guard validate with a baseline: poisoning sliced over many commits is caught in total.

Per-commit limits compare each version with the previous commit only; ten commits flipping 4 %
of the labels each stay under a 5 % limit. ``baseline: {ref: ...}`` bounds the drift since a
reviewed version (a git tag here), on a real git repository and through a DVC cache.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.dvc_hooks.conftest import Keys, guard, init_repo, sh, tree_state, write_csv

pytestmark = pytest.mark.slow

RULES = """\
  validate:
    - path: data/train.csv
      label_column: label
      max_label_shift: 0.05
      max_changed_share: 0.05
      baseline: {ref: data-v1, max_changed_share: 0.10, max_label_shift: 0.2}
    - path: data/dvc.csv
      label_column: label
      max_changed_share: 0.05
      baseline: {ref: data-v1, max_changed_share: 0.10}
"""


def _rows(n: int = 400) -> list[tuple[object, ...]]:
    rng = random.Random(0)
    return [(round(rng.random(), 6), i % 2) for i in range(n)]


def _flip(rows: list[tuple[object, ...]], idx: list[int]) -> None:
    for i in idx:
        rows[i] = (rows[i][0], 1 - int(rows[i][1]))  # type: ignore[call-overload]


@pytest.fixture
def repo(tmp_path: Path, dataset_keys: Keys) -> Path:
    root = init_repo(tmp_path / "r", dataset_keys, validate=RULES)
    write_csv(root / "data" / "train.csv", _rows(), header="f1,label")
    write_csv(root / "data" / "dvc.csv", _rows(), header="f1,label")
    sh(["dvc", "add", "-q", "data/dvc.csv"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "reviewed data"], root)
    sh(["git", "tag", "data-v1"], root)
    return root


@pytest.mark.parametrize("path", ["data/train.csv", "data/dvc.csv"])
def test_poisoning_sliced_over_commits_is_caught_against_the_baseline(
    repo: Path, path: str
) -> None:
    rows = _rows()
    order = random.Random(1).sample(range(len(rows)), len(rows))
    for k in range(1, 4):  # 4 % more flipped labels per commit
        _flip(rows, order[(k - 1) * 16 : k * 16])
        write_csv(repo / path, rows, header="f1,label")
        if path.endswith("dvc.csv"):
            sh(["dvc", "add", "-q", path], repo)
            sh(["git", "add", f"{path}.dvc"], repo)
        else:
            sh(["git", "add", path], repo)
        proc = guard(repo, "validate", "--staged")
        if k <= 2:  # 4 % then 8 % since the baseline: every limit holds
            assert proc.returncode == 0, proc.stderr
            assert "baseline data-v1: max_changed_share" in proc.stdout
            sh(["git", "commit", "-q", "-m", f"slice {k}"], repo)
            continue
        # the third slice: 4 % against the previous commit (allowed), 12 % against data-v1
        before = tree_state(repo)
        assert proc.returncode == 1
        err = proc.stderr
        assert "baseline data-v1: max_changed_share: 0.1200 (limit 0.1000) VIOLATION" in err
        assert "48 of 400 rows of data-v1 modified or removed" in err
        assert f"{path}: max_changed_share: 0.0400 (limit 0.0500) ok" in proc.stdout
        assert tree_state(repo) == before


def test_a_baseline_that_does_not_resolve_fails_closed(repo: Path) -> None:
    sh(["git", "tag", "-d", "data-v1"], repo)
    proc = guard(repo, "validate")
    assert proc.returncode == 1
    assert "baseline 'data-v1' is not a revision of this repository" in proc.stderr
    assert "git fetch --tags" in proc.stderr


def test_a_baseline_ref_with_git_syntax_is_a_policy_error(repo: Path) -> None:
    policy = repo / "guard.yaml"
    policy.write_text(policy.read_text().replace("ref: data-v1,", "ref: --output=x,", 1))
    proc = guard(repo, "validate")
    assert proc.returncode == 2
    assert "baseline.ref must be a plain git revision" in proc.stderr


def test_changed_rows_compare_numbers_not_their_spelling() -> None:
    """An int column that gains a missing value becomes float: ``3`` and ``3.0`` are the same
    cell (it counted every row as modified), while a real change, a NaN, or two integers beyond
    float precision stay different."""
    import pandas as pd

    from dvc_hooks import _stats

    ints = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    floats = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "b", "c"]})
    edited = pd.DataFrame({"x": [1.0, 2.5, float("nan")], "y": ["a", "b", "c"]})
    assert _stats.removed_rows(ints, floats) == 0
    assert _stats.removed_rows(ints, edited) == 2
    big = pd.DataFrame({"x": [2**60, 2**60 + 1]})
    assert _stats.removed_rows(big, pd.DataFrame({"x": [float(2**60)] * 2})) == 2
