"""dvc-guard validate (ML02): poisoned data blocked with the rule and numbers in the message."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from dvc_hooks import _stats
from tests.dvc_hooks.conftest import Keys, guard, init_repo, sh, tree_state, write_csv

pytestmark = pytest.mark.slow

RULES = """\
  validate:
    - path: data/train.csv
      label_column: label
      max_label_shift: 0.05
      max_psi: 0.1
      max_duplicate_share: 0.05
      max_changed_share: 0.05
      max_null_share: 0.0
      columns: {f1: float, f2: int, label: int}
      ranges: {f1: [0, 1]}
      categories: {label: [0, 1]}
    - path: data/table.parquet
      min_rows: 1
    - path: data/dvc.csv
      label_column: label
      max_label_shift: 0.05
    - path: data/tables/part.csv
      label_column: label
      max_label_shift: 0.05
"""


def _rows(n: int = 1000, seed: int = 0) -> list[tuple[object, ...]]:
    rng = random.Random(seed)
    return [(round(rng.random(), 6), rng.randint(0, 9), 1 if i % 10 < 4 else 0) for i in range(n)]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, dataset_keys: Keys) -> Path:
    """git repo with a git-tracked CSV and Parquet file, and a DVC-tracked CSV, committed."""
    import pandas as pd

    root = init_repo(tmp_path_factory.mktemp("val") / "r", dataset_keys, validate=RULES)
    write_csv(root / "data" / "train.csv", _rows())
    pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}).to_parquet(root / "data/table.parquet")
    write_csv(root / "data" / "dvc.csv", _rows(300, seed=5))
    write_csv(root / "data" / "tables" / "part.csv", _rows(200, seed=6))
    sh(["dvc", "add", "-q", "data/dvc.csv", "data/tables"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "data"], root)
    return root


def _restore(root: Path) -> None:
    sh(["git", "reset", "-q", "--hard"], root)


def test_committed_data_passes_with_numbers(repo: Path) -> None:
    proc = guard(repo, "validate", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    rules = {f["rule"] for f in out["findings"]}
    assert "max_label_shift (Jensen-Shannon distance)" in rules
    assert "max_changed_share" in rules
    assert all(f["ok"] for f in out["findings"])


def test_ten_percent_flipped_labels_are_blocked(repo: Path) -> None:
    rows = _rows()
    zeros = [i for i, r in enumerate(rows) if r[2] == 0]
    for i in random.Random(1).sample(zeros, 100):  # 10% of all rows: 0 -> 1
        rows[i] = (rows[i][0], rows[i][1], 1)
    write_csv(repo / "data" / "train.csv", rows)
    sh(["git", "add", "data/train.csv"], repo)
    before = tree_state(repo)
    proc = guard(repo, "validate", "--staged")
    assert proc.returncode == 1
    err = proc.stderr
    expected_js = _stats.js_distance({"0": 0.6, "1": 0.4}, {"0": 0.5, "1": 0.5})
    assert f"max_label_shift (Jensen-Shannon distance): {expected_js:.4f} (limit 0.0500)" in err
    assert "{0: 0.600, 1: 0.400} -> {0: 0.500, 1: 0.500}" in err
    assert "max_changed_share: 0.1000 (limit 0.0500) VIOLATION" in err
    assert "100 of 1000 previous rows modified or removed" in err
    assert "max_psi: 0.0405 (limit 0.1000) ok" in proc.stdout
    assert tree_state(repo) == before
    _restore(repo)


def test_randomly_flipped_labels_are_caught_by_changed_share(repo: Path) -> None:
    rows = _rows()
    for i in random.Random(2).sample(range(len(rows)), 100):
        rows[i] = (rows[i][0], rows[i][1], 1 - int(rows[i][2]))  # type: ignore[call-overload]
    write_csv(repo / "data" / "train.csv", rows)
    proc = guard(repo, "validate")
    assert proc.returncode == 1
    assert "max_changed_share: 0.1000" in proc.stderr
    _restore(repo)


def test_twenty_percent_injected_duplicates_are_blocked(repo: Path) -> None:
    rows = _rows()
    rows += random.Random(3).sample(rows, 200)
    write_csv(repo / "data" / "train.csv", rows)
    proc = guard(repo, "validate")
    assert proc.returncode == 1
    assert "max_duplicate_share: 0.1667 (limit 0.0500) VIOLATION" in proc.stderr
    assert "200 of 1200 rows repeat an earlier row" in proc.stderr
    _restore(repo)


def test_schema_range_category_and_null_violations(repo: Path) -> None:
    rows = _rows()
    rows[0] = (5.0, 1, 2)  # f1 out of [0, 1], label 2 not allowed
    rows[1] = ("", 1, 0)  # a null
    write_csv(repo / "data" / "train.csv", rows)
    proc = guard(repo, "validate")
    assert proc.returncode == 1
    assert "ranges.f1: 1 rows outside" in proc.stderr
    assert "categories.label: 2" in proc.stderr
    assert "max_null_share: 0.0010 (limit 0.0000) VIOLATION (column f1)" in proc.stderr
    _restore(repo)


def test_csv_with_broken_rows_is_refused(repo: Path) -> None:
    p = repo / "data" / "train.csv"
    p.write_text(p.read_text() + "1,2,3,4,5\n")
    proc = guard(repo, "validate")
    assert proc.returncode == 1
    assert "data/train.csv: cannot be read as CSV" in proc.stderr
    assert "Expected 3 fields" in proc.stderr
    _restore(repo)


def test_parquet_with_changed_schema_is_blocked(repo: Path) -> None:
    import pandas as pd

    pd.DataFrame({"a": ["1", "2"], "c": [1.0, 2.0]}).to_parquet(repo / "data/table.parquet")
    proc = guard(repo, "validate", "data/table.parquet")
    assert proc.returncode == 1
    assert "data/table.parquet: schema: changed" in proc.stderr
    assert "a: int64 -> " in proc.stderr
    assert "b: str -> -" in proc.stderr or "b: object -> -" in proc.stderr
    (repo / "data/table.parquet").write_bytes(b"PAR1 not really")
    proc = guard(repo, "validate", "data/table.parquet")
    assert proc.returncode == 1
    assert "cannot be read as PARQUET" in proc.stderr
    _restore(repo)


def test_dvc_tracked_previous_version_comes_from_the_dvc_cache(repo: Path) -> None:
    rows = _rows(300, seed=5)
    rows = [(a, b, 1) for a, b, _ in rows]  # every label flipped to 1
    write_csv(repo / "data" / "dvc.csv", rows)
    proc = guard(repo, "validate", "data/dvc.csv")
    assert proc.returncode == 1
    assert "data/dvc.csv: max_label_shift (Jensen-Shannon distance)" in proc.stderr
    assert "-> {1: 1.000}" in proc.stderr
    sh(["dvc", "checkout", "-q", "-f", "data/dvc.csv"], repo)
    assert guard(repo, "validate", "data/dvc.csv").returncode == 0


def test_file_inside_a_dvc_directory_output_is_compared_with_its_cached_version(
    repo: Path,
) -> None:
    write_csv(repo / "data" / "tables" / "part.csv", [(0.5, 1, 1)] * 200)
    proc = guard(repo, "validate", "data/tables/part.csv")
    assert proc.returncode == 1
    assert "data/tables/part.csv: max_label_shift (Jensen-Shannon distance)" in proc.stderr
    sh(["dvc", "checkout", "-q", "-f", "data/tables"], repo)
    proc = guard(repo, "validate", "data/tables/part.csv")
    assert proc.returncode == 0, proc.stderr
    assert "note:" not in proc.stdout  # the previous version was found


def test_paths_outside_the_repository_are_refused(repo: Path, tmp_path: Path) -> None:
    proc = guard(repo, "validate", str(tmp_path / "x.csv"))
    assert proc.returncode == 2
    assert "is outside the repository" in proc.stderr
    proc = guard(repo, "verify", "data/train.csv")
    assert proc.returncode == 2
    assert "not a DVC file: data/train.csv" in proc.stderr


def test_staged_mode_skips_rules_whose_data_did_not_change(repo: Path) -> None:
    write_csv(repo / "data" / "train.csv", _rows() * 2)  # poisoned but not staged
    proc = guard(repo, "validate", "--staged")
    assert proc.returncode == 0, proc.stderr
    assert "no validation rule applies" in proc.stdout
    _restore(repo)
