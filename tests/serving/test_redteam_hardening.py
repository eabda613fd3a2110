"""Red team: get more out of a hardened model than labels-only / top-k / rounding allow.

Real pyfunc models (``mlflow.pyfunc.save_model`` + ``load_model``) whose outputs are not the
plain probability matrix the hardening was written for: dicts, frames with extra columns, one
probability column, nested floats. Each answer goes through MLflow's own ``invocations``
function (what ``/invocations`` runs), so the status and the body are what a client sees.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import PythonModel

from mlflow_guard.serving.hardening import HardenedModel, OutputPolicy

PROBS = np.array([[0.123456789, 0.876543211], [0.912345678, 0.087654322]])
ROWS = pd.DataFrame({"x": [1.0, 2.0]})
# every digit sequence of a full-precision probability the models return
SECRETS = ("123456", "876543", "912345", "087654", "2345678")


class _Base(PythonModel):
    """A pyfunc model returning a fixed output built from :data:`PROBS`."""

    def load_context(self, context: Any) -> None:
        return None

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        raise NotImplementedError


class DictOutput(_Base):
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return {"label": ["cat", "dog"], "probabilities": PROBS.tolist()}


class FrameWithLabelColumn(_Base):
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return pd.DataFrame({"label": ["dog", "cat"], "p_cat": PROBS[:, 0], "p_dog": PROBS[:, 1]})


class PositiveProbability(_Base):
    """A binary scorer returning only P(positive) per row, as a 1-D float array."""

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return PROBS[:, 1].copy()


class SingleColumnFrame(_Base):
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return pd.DataFrame({"score": PROBS[:, 1]})


class NestedFloats(_Base):
    """Probabilities nested in a dict and in an object column: rounding must reach them."""

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return {"scores": PROBS, "detail": [{"p": float(PROBS[0, 0])}, (float(PROBS[1, 0]),)]}


class ObjectColumn(_Base):
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return pd.DataFrame({"label": ["dog", "cat"], "probs": [list(r) for r in PROBS]})


class Labels(_Base):
    """Already labels (strings): nothing to harden, must still be served."""

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return np.array(["dog", "cat"])


class IntegralFloatLabels(_Base):
    """A classifier whose classes are floats 0.0/1.0: its labels are floats, not scores."""

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return np.array([1.0, 0.0])


def _load(tmp_path: Path, model: _Base) -> Any:
    import mlflow.pyfunc

    path = tmp_path / type(model).__name__
    # explicit requirements: no pip inference (a subprocess per save)
    mlflow.pyfunc.save_model(str(path), python_model=model, pip_requirements=["mlflow"])
    return mlflow.pyfunc.load_model(str(path))


def _invoke(hardened: HardenedModel) -> tuple[int, str]:
    """Status and body MLflow's ``/invocations`` handler produces for two rows."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    body = json.dumps({"dataframe_split": ROWS.to_dict(orient="split")})
    try:
        resp = scoring_server.invocations(body, "application/json", hardened, None)
    except MlflowException as e:
        return e.get_http_status_code(), e.serialize_as_json()
    return resp.status, str(resp.response)


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in re.sub(r"\s", "", text)]


@pytest.mark.parametrize(
    "model",
    [DictOutput(), FrameWithLabelColumn(), PositiveProbability(), SingleColumnFrame()],
    ids=lambda m: type(m).__name__,
)
@pytest.mark.parametrize(
    "policy", [OutputPolicy(labels_only=True), OutputPolicy(top_k=1, round_digits=1)], ids=str
)
def test_outputs_that_cannot_be_reduced_to_labels_are_refused(
    tmp_path: Path, model: _Base, policy: OutputPolicy
) -> None:
    pyfunc = _load(tmp_path, model)
    assert _leaks(json.dumps(pyfunc.predict(ROWS), default=_plain_json)) != []
    status, body = _invoke(HardenedModel(pyfunc, policy))
    assert _leaks(body) == [], body
    assert status == 500, body
    assert "output hardening" in body, body
    assert "cannot reduce this model's output" in body, body


@pytest.mark.parametrize(
    "model", [NestedFloats(), ObjectColumn(), DictOutput()], ids=lambda m: type(m).__name__
)
def test_rounding_reaches_nested_floats(tmp_path: Path, model: _Base) -> None:
    pyfunc = _load(tmp_path, model)
    assert _leaks(json.dumps(pyfunc.predict(ROWS), default=_plain_json)) != []
    status, body = _invoke(HardenedModel(pyfunc, OutputPolicy(round_digits=2)))
    assert status == 200, body
    assert _leaks(body) == [], body
    assert "0.12" in body or "0.91" in body


def _plain_json(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, pd.DataFrame):
        return o.to_dict(orient="list")
    raise TypeError(type(o))


def test_nan_and_inf_survive_rounding(tmp_path: Path) -> None:
    class Odd(_Base):
        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return {"s": [float("nan"), float("inf"), -float("inf"), 0.123456]}

    out = HardenedModel(_load(tmp_path, Odd()), OutputPolicy(round_digits=3)).predict(ROWS)
    s = out["s"]
    assert np.isnan(s[0])
    assert s[1:] == [float("inf"), -float("inf"), 0.123]


@pytest.mark.parametrize(
    ("model", "expected"),
    [(Labels(), ["dog", "cat"]), (IntegralFloatLabels(), [1.0, 0.0])],
    ids=["strings", "integral-floats"],
)
def test_outputs_that_are_labels_are_still_served(
    tmp_path: Path, model: _Base, expected: list[Any]
) -> None:
    hardened = HardenedModel(_load(tmp_path, model), OutputPolicy(labels_only=True))
    status, body = _invoke(hardened)
    assert status == 200, body
    assert json.loads(body)["predictions"] == expected
