"""Output hardening on a real scikit-learn model loaded through MLflow's pyfunc loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlflow_guard.core.errors import UsageError
from mlflow_guard.serving.hardening import HardenedModel, OutputPolicy, count_rows, current_charge
from tests.serving.conftest import save_model

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


@pytest.fixture(scope="module")
def pyfunc(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import mlflow.pyfunc

    path = save_model(Path(tmp_path_factory.mktemp("hardening")) / "model")
    return mlflow.pyfunc.load_model(str(path))


def test_plain_output_is_the_probability_matrix(pyfunc: Any) -> None:
    out = HardenedModel(pyfunc, OutputPolicy()).predict(pd.DataFrame(X))
    assert np.asarray(out).shape == (3, 3)


def test_labels_only(pyfunc: Any) -> None:
    out = HardenedModel(pyfunc, OutputPolicy(labels_only=True)).predict(pd.DataFrame(X))
    assert out == [0, 2, 1]
    assert all(isinstance(v, int) for v in out)


def test_top_k_rounded(pyfunc: Any) -> None:
    raw = np.asarray(pyfunc.predict(pd.DataFrame(X)))
    out = HardenedModel(pyfunc, OutputPolicy(top_k=2, round_digits=2)).predict(pd.DataFrame(X))
    assert len(out) == 3
    for row, probs in zip(out, raw, strict=True):
        assert len(row) == 2
        best = int(np.argmax(probs))
        assert row[0]["label"] == best
        assert row[0]["probability"] == round(float(probs[best]), 2)
        assert row[0]["probability"] >= row[1]["probability"]


def test_round_only(pyfunc: Any) -> None:
    out = HardenedModel(pyfunc, OutputPolicy(round_digits=1)).predict(pd.DataFrame(X))
    arr = np.asarray(out)
    assert arr.shape == (3, 3)
    assert np.array_equal(arr, np.round(arr, 1))


def test_charge_called_with_rows_before_predicting(pyfunc: Any) -> None:
    seen: list[int] = []

    def charge(n: int) -> None:
        seen.append(n)
        raise RuntimeError("over budget")

    token = current_charge.set(charge)
    try:
        with pytest.raises(RuntimeError, match="over budget"):
            HardenedModel(pyfunc, OutputPolicy()).predict(pd.DataFrame(X))
    finally:
        current_charge.reset(token)
    assert seen == [3]


@pytest.mark.parametrize(
    ("data", "rows"),
    [(pd.DataFrame(X), 3), (X, 3), ([[1], [2]], 2), ({"a": np.zeros((4, 2))}, 4), ("x", 1)],
)
def test_count_rows(data: Any, rows: int) -> None:
    assert count_rows(data) == rows


def test_conflicting_options() -> None:
    with pytest.raises(UsageError):
        OutputPolicy(labels_only=True, top_k=2)
    with pytest.raises(UsageError):
        OutputPolicy(top_k=0)
    with pytest.raises(UsageError):
        OutputPolicy(round_digits=-1)
