"""picklescan as a second opinion: its dangerous findings are added, never subtracted."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from mlflow_guard.core.scan import ScanReport
from mlflow_guard.scanning import scan_model, second_opinion

pytest.importorskip("picklescan")


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("echo never-run",))


def _evil_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.pkl").write_bytes(pickle.dumps(_Evil(), protocol=4))
    return d


def test_second_opinion_adds_what_picklescan_calls_dangerous(tmp_path: Path) -> None:
    d = _evil_dir(tmp_path)
    report = second_opinion(d, ScanReport())  # as if our scanner had found nothing
    assert not report.safe
    assert any("picklescan second opinion" in f.reason for f in report.findings)
    assert any(imp.endswith(".system") for f in report.findings for imp in f.imports)


def test_no_duplicate_when_both_agree(tmp_path: Path) -> None:
    report = scan_model(_evil_dir(tmp_path))
    assert not report.safe
    assert not [f for f in report.findings if "picklescan" in f.reason]


def test_clean_sklearn_model_stays_clean(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    d = tmp_path / "clean"
    d.mkdir()
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    (d / "model.pkl").write_bytes(pickle.dumps(model, protocol=4))
    report = scan_model(d)
    assert report.safe, [f.reason for f in report.findings]
