"""The model under test as a query-counted black box (labels, and probabilities if exposed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

_AFFINE_STEPS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler")


class BudgetExceeded(Exception):
    """The attack used up its query budget."""


@dataclass
class Target:
    """Query access to a classifier, counting every input row sent to it.

    Attributes:
        classes: class labels, in the order of probability columns.
        predict_labels: rows → labels.
        predict_proba: rows → probabilities, or ``None`` when only labels are exposed.
        raw: the underlying scikit-learn estimator, when known (for the exact linear bound).
    """

    classes: NDArray[Any]
    predict_labels: Callable[[Array], NDArray[Any]]
    predict_proba: Callable[[Array], Array] | None = None
    raw: Any = None
    queries: int = 0
    budget: int | None = None
    _spent: list[int] = field(default_factory=list)

    def labels(self, x: Array) -> NDArray[Any]:
        """Predicted labels (counted)."""
        self._count(len(x))
        return self.predict_labels(x)

    def proba(self, x: Array) -> Array:
        """Predicted probabilities (counted); raises if the model does not expose them."""
        if self.predict_proba is None:
            raise ValueError("model exposes labels only")
        self._count(len(x))
        return self.predict_proba(x)

    def _count(self, n: int) -> None:
        if self.budget is not None and self.queries + n > self.budget:
            raise BudgetExceeded(f"query budget {self.budget} exhausted")
        self.queries += n

    def with_budget(self, budget: int | None) -> Target:
        """A fresh counter over the same model."""
        return Target(self.classes, self.predict_labels, self.predict_proba, self.raw, 0, budget)

    def linear_parts(self) -> tuple[Array, Array] | None:
        """``(W, b)`` with decision scores ``x @ W.T + b`` when the model is affine, else None.

        Affine means: a linear classifier (``coef_``), alone or after per-feature scalers
        (StandardScaler, MinMaxScaler, MaxAbsScaler). ``W`` is in input space.
        """
        model = self.raw
        steps: list[Any] = [model]
        if hasattr(model, "steps"):
            steps = [s for _, s in model.steps if s not in (None, "passthrough")]
        final = steps[-1]
        if not (hasattr(final, "coef_") and hasattr(final, "decision_function")):
            return None
        if any(type(s).__name__ not in _AFFINE_STEPS for s in steps[:-1]):
            return None
        decision = model.decision_function
        d = final.coef_.shape[1]
        base = np.atleast_2d(decision(np.zeros((1, d))))
        eye = np.atleast_2d(decision(np.eye(d)))
        w = (eye - base).T if base.shape[1] > 1 else (eye - base).reshape(1, d)
        b = base.reshape(-1)
        probe = np.random.default_rng(0).normal(size=(4, d))
        got = np.atleast_2d(decision(probe)).reshape(4, -1)
        if not np.allclose(got, probe @ w.T + b, rtol=1e-6, atol=1e-6):
            return None
        return w.astype(np.float64), b.astype(np.float64)


def from_estimator(model: Any) -> Target:
    """A target over a fitted scikit-learn classifier."""
    proba = model.predict_proba if hasattr(model, "predict_proba") else None
    return Target(np.asarray(model.classes_), model.predict, proba, model)


def from_pyfunc(model: Any, feature_names: list[str] | None, x_eval: Array) -> Target:
    """A target over an MLflow pyfunc model (the raw scikit-learn model when available).

    A model without a raw scikit-learn estimator is a labels-only black box; its classes are
    the labels it predicts on the evaluation data.
    """
    try:
        raw = model.get_raw_model()
    except (NotImplementedError, AttributeError):
        raw = None
    if raw is not None and hasattr(raw, "classes_") and hasattr(raw, "predict"):
        return from_estimator(raw)

    def labels(x: Array) -> NDArray[Any]:
        import pandas as pd

        frame = pd.DataFrame(x, columns=feature_names)
        return np.asarray(model.predict(frame)).reshape(-1)

    return Target(np.unique(labels(x_eval)), labels, None, None)
