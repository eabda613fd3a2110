"""Red team of ``dvc-guard validate --staged`` (ML02): a poisoned CSV/Parquet commit must be
blocked with its numbers or refused as unreadable (exit 1/2), never passed silently.

Real git + DVC repositories in temp folders; every test restores the repository afterwards.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from dvc_hooks import dvcfiles
from tests.dvc_hooks.conftest import Keys, guard, init_repo, sh, tree_state, write_csv

pytestmark = pytest.mark.slow

RULES = """\
  validate:
    - path: data/train.csv
      label_column: label
      max_label_shift: 0.05
      max_duplicate_share: 0.05
      max_changed_share: 0.05
      ranges: {f1: [0, 1], f2: [0, null]}
      categories: {label: [0, 1]}
    - path: data/d.csv
      label_column: label
      max_label_shift: 0.05
      max_changed_share: 0.05
    - path: data/t.parquet
      label_column: label
      categories: {label: [0, 1]}
      allow_schema_change: true
    - path: data/new.csv
      label_column: label
      categories: {label: [0, 1]}
      allow_schema_change: true
"""

HEADER = "f1,f2,label"
Row = tuple[object, ...]


def _rows(n: int = 1000) -> list[Row]:
    rng = random.Random(7)
    return [(round(rng.random(), 4), i % 10, 1 if i % 10 < 4 else 0) for i in range(n)]


def _poisoned() -> list[Row]:
    rows = _rows()
    return [(a, b, 1) if i % 5 == 0 else (a, b, c) for i, (a, b, c) in enumerate(rows)]


def _csv(rows: list[Row], header: str = HEADER) -> str:
    return header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, dataset_keys: Keys) -> Path:
    """git-tracked data/train.csv and data/t.parquet, DVC-tracked data/d.csv, committed."""
    import pandas as pd

    root = init_repo(tmp_path_factory.mktemp("rtv") / "r", dataset_keys, validate=RULES)
    write_csv(root / "data" / "train.csv", _rows())
    write_csv(root / "data" / "d.csv", _rows())
    pd.DataFrame({"f1": [0.1, 0.2, 0.3, 0.4], "label": [0, 1, 0, 1]}).to_parquet(
        root / "data" / "t.parquet"
    )
    sh(["dvc", "add", "-q", "data/d.csv"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "data"], root)
    return root


@pytest.fixture
def clean(repo: Path) -> Iterator[Path]:
    """The repository, restored (index, working tree, data/d.csv) after the test."""
    yield repo
    sh(["git", "reset", "-q", "--hard"], repo)
    sh(["git", "clean", "-qfd", "data"], repo)
    sh(["dvc", "checkout", "-q", "--force", "data/d.csv"], repo)


def _stage(root: Path, rel: str, data: bytes) -> None:
    (root / rel).write_bytes(data)
    sh(["git", "add", rel], root)


def _blocked(root: Path, *reasons: str, rc: int = 1) -> str:
    """Run the pre-commit check; it must exit ``rc``, name every reason, and change nothing."""
    before = tree_state(root)
    index = sh(["git", "ls-files", "-s"], root).stdout
    proc = guard(root, "validate", "--staged")
    out = proc.stdout + proc.stderr
    assert proc.returncode == rc, out
    for reason in reasons:
        assert reason in out, out
    assert tree_state(root) == before
    assert sh(["git", "ls-files", "-s"], root).stdout == index
    return out


def test_clean_commit_passes(clean: Path) -> None:
    _stage(clean, "data/train.csv", _csv([*_rows(), (0.5, 3, 0)]).encode())
    proc = guard(clean, "validate", "--staged")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_staged_poison_with_a_clean_working_copy_is_validated_as_staged(clean: Path) -> None:
    _stage(clean, "data/train.csv", _csv(_poisoned()).encode())
    write_csv(clean / "data" / "train.csv", _rows())  # what the hook used to read
    _blocked(clean, "max_label_shift", "max_changed_share", "VIOLATION")


def test_staged_dvc_record_of_poison_with_a_clean_working_copy_is_blocked(clean: Path) -> None:
    write_csv(clean / "data" / "d.csv", _poisoned())
    sh(["dvc", "add", "-q", "data/d.csv"], clean)
    sh(["git", "add", "data/d.csv.dvc"], clean)
    write_csv(clean / "data" / "d.csv", _rows())  # clean bytes back, not dvc-added
    _blocked(clean, "data/d.csv: max_label_shift", "100 of 1000 previous rows")


def test_cache_object_swapped_for_clean_bytes_is_refused(clean: Path) -> None:
    write_csv(clean / "data" / "d.csv", _poisoned())
    sh(["dvc", "add", "-q", "data/d.csv"], clean)
    sh(["git", "add", "data/d.csv.dvc"], clean)
    (out,) = dvcfiles.parse("data/d.csv.dvc", (clean / "data/d.csv.dvc").read_bytes())
    obj = dvcfiles.cache_object(clean, out.md5)
    assert obj is not None
    obj.chmod(0o644)
    obj.write_text(_csv(_rows()))
    try:
        _blocked(clean, f"DVC cache object for md5 {out.md5}", "holds other bytes")
    finally:
        obj.unlink()


def test_staged_dvc_record_whose_object_is_not_cached_fails_closed(clean: Path) -> None:
    write_csv(clean / "data" / "d.csv", _poisoned())
    sh(["dvc", "add", "-q", "data/d.csv"], clean)
    sh(["git", "add", "data/d.csv.dvc"], clean)
    (out,) = dvcfiles.parse("data/d.csv.dvc", (clean / "data/d.csv.dvc").read_bytes())
    obj = dvcfiles.cache_object(clean, out.md5)
    assert obj is not None
    obj.unlink()
    _blocked(clean, "is not in the DVC cache", "(md5 " + out.md5)


@pytest.mark.parametrize(
    "header",
    ["f1,f2,label,label", "f1,f2,label,Label", "f1,f2,label, label ", "f1,f2,label,\ufefflabel"],
)
def test_a_second_label_column_is_refused_even_without_a_schema_check(
    clean: Path, header: str
) -> None:
    rows = [(a, b, c, 1) for a, b, c in _rows(50)]  # first label clean, second all 1
    _stage(clean, "data/new.csv", _csv(rows, header).encode("utf-8"))
    _blocked(clean, "ambiguous column names", "'label' and ")


def test_nan_in_a_ranged_column_counts_as_outside(clean: Path) -> None:
    rows = [("nan" if i < 30 else a, "" if i < 5 else b, c) for i, (a, b, c) in enumerate(_rows())]
    _stage(clean, "data/train.csv", _csv(rows).encode())
    out = _blocked(clean, "ranges.f1: 30 rows outside", "30 missing (counted outside)")
    assert "ranges.f2: 5 rows outside" in out


def test_infinity_is_outside_an_open_range(clean: Path) -> None:
    rows = [(a, "inf" if i == 3 else b, c) for i, (a, b, c) in enumerate(_rows())]
    _stage(clean, "data/train.csv", _csv(rows).encode())
    _blocked(clean, "ranges.f2: 1 rows outside (limit [0.0, None]) VIOLATION")


def test_numbers_as_strings_are_outside_a_range(clean: Path) -> None:
    rows = [(a, "x5" if i == 3 else b, c) for i, (a, b, c) in enumerate(_rows())]
    _stage(clean, "data/train.csv", _csv(rows).encode())
    _blocked(clean, "ranges.f2: 1000 rows outside", "not numeric")


def test_duplicates_that_differ_by_whitespace_or_number_format_count(clean: Path) -> None:
    base = _rows()
    extra = [(f" {a:.6f} ", f"{b}.0", c) for a, b, c in base[:100]]
    _stage(clean, "data/train.csv", _csv(base + extra).encode())
    _blocked(
        clean, "max_duplicate_share", "107 of 1100 rows repeat an earlier row"
    )  # 7 in the base


def test_text_duplicates_that_differ_by_whitespace_count(clean: Path) -> None:
    rows = [("Paris" if i % 2 else " Paris ", 1) for i in range(40)]
    rules = "\n".join(
        [
            "  validate:",
            "    - {path: data/new.csv, max_duplicate_share: 0.5}",
        ]
    )
    policy = (clean / "guard.yaml").read_text()
    (clean / "guard.yaml").write_text(policy.split("  validate:")[0] + rules + "\n")
    _stage(clean, "data/new.csv", _csv(rows, "city,label").encode())
    _blocked(clean, "max_duplicate_share: 0.9750", "39 of 40 rows")


def _parquet(table: object) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=2)  # several row groups
    return buf.getvalue()


def test_nested_parquet_label_is_refused_with_a_reason(clean: Path) -> None:
    import pyarrow as pa

    t = pa.table({"f1": [0.1, 0.2, 0.3, 0.4], "label": [[0], [1], [7], [1]]})
    _stage(clean, "data/t.parquet", _parquet(t))
    _blocked(clean, "nested columns", "column 'label'")


def test_parquet_dates_and_decimals_are_scalars_not_nested(clean: Path) -> None:
    import datetime
    import decimal

    import pyarrow as pa

    t = pa.table(
        {
            "day": [datetime.date(2024, 1, d) for d in range(1, 5)],
            "amount": [decimal.Decimal("1.50")] * 4,
            "label": [0, 1, 0, 1],
        }
    )
    _stage(clean, "data/t.parquet", _parquet(t))
    proc = guard(clean, "validate", "--staged")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dictionary_encoded_parquet_label_is_still_checked(clean: Path) -> None:
    import pyarrow as pa

    labels = pa.array([0, 1, 7, 1]).dictionary_encode()
    _stage(clean, "data/t.parquet", _parquet(pa.table({"f1": [0.1] * 4, "label": labels})))
    _blocked(clean, "categories.label: 7", "values not allowed")


def _bad_encodings() -> list[tuple[str, bytes, str]]:
    import pandas as pd

    poisoned = _csv(_poisoned())
    buf = io.BytesIO()
    pd.DataFrame(_poisoned(), columns=["f1", "f2", "label"]).to_parquet(buf)
    return [
        ("utf-16", poisoned.encode("utf-16"), "cannot be read as CSV"),
        ("latin-1", poisoned.replace("f1", "f\xe91").encode("latin-1"), "cannot be read as CSV"),
        ("bom", ("\ufeff" + poisoned).encode(), "max_label_shift"),
        ("semicolons", poisoned.replace(",", ";").encode(), "categories.label: missing column"),
        ("no header", poisoned.split("\n", 1)[1].encode(), "categories.label: missing column"),
        ("comment line", (HEADER + "\n# x\n" + poisoned.split("\n", 1)[1]).encode(), "ranges.f1"),
        ("parquet named .csv", buf.getvalue(), "cannot be read as CSV"),
        (
            "labels as booleans",
            _csv([(a, b, "True" if c else "False") for a, b, c in _poisoned()]).encode(),
            "max_label_shift",
        ),
        (
            "quoted newline in a label",
            _csv(
                [(a, b, '"1\n"' if i % 5 == 0 else c) for i, (a, b, c) in enumerate(_rows())]
            ).encode(),
            "categories.label",
        ),
    ]


@pytest.mark.parametrize("case", _bad_encodings(), ids=lambda c: c[0])
def test_format_tricks_are_blocked_or_unreadable(clean: Path, case: tuple[str, bytes, str]) -> None:
    _, data, reason = case
    _stage(clean, "data/train.csv", data)
    _blocked(clean, reason)


def test_poisoned_parquet_named_csv_in_a_dvc_output_is_refused(clean: Path) -> None:
    import pandas as pd

    pd.DataFrame(_poisoned(), columns=["f1", "f2", "label"]).to_parquet(clean / "data/d.csv")
    sh(["dvc", "add", "-q", "data/d.csv"], clean)
    sh(["git", "add", "data/d.csv.dvc"], clean)
    _blocked(clean, "data/d.csv: cannot be read as CSV")
