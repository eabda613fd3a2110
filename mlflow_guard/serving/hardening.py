"""Output hardening (ML03 inversion, ML04 membership inference) and budget charging per row.

A classifier that returns full-precision probabilities leaks the most a model can leak:
confidence scores drive membership-inference and inversion attacks and make extraction cheap.
The options trade detail for safety:

- ``labels_only``: a probability matrix becomes the most likely label per row;
- ``top_k=N``: each row becomes its N most likely ``{"label", "probability"}`` pairs;
- ``round_digits=N``: floating-point outputs rounded to N decimals, wherever they sit (frames,
  object columns, dicts, lists, tuples).

With labels-only or top-k, an output that is neither a score matrix (2-D float, two or more
columns) nor already labels (no non-integral float anywhere) is refused, not passed through:
dicts, frames with extra columns and single probability columns would otherwise leak full
scores (fail closed; the client gets an error naming the model output, never the output).

:class:`HardenedModel` wraps an already verified and loaded pyfunc model so MLflow's scoring
server (which parses the input) calls it exactly as it would call the model itself.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlflow_guard.core.errors import UsageError

#: Set by the serving middleware for each request: charges ``n`` predictions or raises.
current_charge: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar(
    "mlflow_guard_serving_charge", default=None
)


@dataclass(frozen=True)
class OutputPolicy:
    """Which hardening to apply to model outputs (at most one of labels/top-k)."""

    labels_only: bool = False
    top_k: int | None = None
    round_digits: int | None = None

    def __post_init__(self) -> None:
        if self.labels_only and self.top_k is not None:
            raise UsageError("--labels-only and --top-k exclude each other", hint="pick one")
        if self.top_k is not None and self.top_k < 1:
            raise UsageError(f"--top-k must be at least 1, got {self.top_k}")
        if self.round_digits is not None and not 0 <= self.round_digits <= 15:
            raise UsageError(f"--round must be between 0 and 15, got {self.round_digits}")

    @property
    def active(self) -> bool:
        """Whether any hardening applies."""
        return self.labels_only or self.top_k is not None or self.round_digits is not None


def count_rows(data: Any) -> int:
    """Number of predictions an input asks for (rows of a frame/array, items of a list)."""
    if hasattr(data, "shape") and getattr(data, "shape", ()) != ():
        return int(data.shape[0])
    if isinstance(data, dict):
        return max((count_rows(v) for v in data.values()), default=1)
    if isinstance(data, list | tuple):
        return len(data)
    return 1


def _matrix(raw: Any) -> tuple[np.ndarray[Any, Any], list[Any] | None] | None:
    """A 2-D float score matrix and its column labels, or ``None`` for other outputs."""
    cols: list[Any] | None = None
    if hasattr(raw, "columns") and hasattr(raw, "to_numpy"):
        cols = list(raw.columns)
        raw = raw.to_numpy()
    arr = np.asarray(raw) if isinstance(raw, np.ndarray | list) else None
    if (
        arr is None
        or arr.ndim != 2
        or arr.shape[1] < 2
        or not np.issubdtype(arr.dtype, np.floating)
    ):
        return None
    return arr, cols


def _plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


class HardenedModel:
    """A pyfunc model whose outputs are hardened and whose inputs are charged to a budget.

    Args:
        model: the loaded ``PyFuncModel`` (verified before loading).
        policy: output hardening to apply.
    """

    def __init__(self, model: Any, policy: OutputPolicy) -> None:
        self._model = model
        self.policy = policy
        self.metadata = model.metadata
        self._labels = self._class_labels(model)

    @staticmethod
    def _class_labels(model: Any) -> Sequence[Any] | None:
        try:
            raw = model.get_raw_model()
        except Exception:  # flavours without a raw model: indices are used
            return None
        classes = getattr(raw, "classes_", None)
        return [_plain(c) for c in classes] if classes is not None else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Charge the caller's budget, predict, then harden the output."""
        charge = current_charge.get()
        if charge is not None:
            charge(count_rows(data))
        raw = self._model.predict(data, params=params)
        return self.harden(raw) if self.policy.active else raw

    def _label(self, i: int, cols: list[Any] | None) -> Any:
        if cols is not None:
            return _plain(cols[i])
        if self._labels is not None and len(self._labels) > i:
            return self._labels[i]
        return i

    def harden(self, raw: Any) -> Any:
        """Apply the :class:`OutputPolicy` to one model output."""
        p = self.policy
        if p.labels_only or p.top_k is not None:
            found = _matrix(raw)
            if found is None:
                if not self._is_labels(raw):
                    raise _refusal(raw, "--labels-only" if p.labels_only else "--top-k")
                return raw
            arr, cols = found
            if p.labels_only:
                return [self._label(int(i), cols) for i in np.argmax(arr, axis=1)]
            k = min(int(p.top_k or 1), arr.shape[1])
            order = np.argsort(-arr, axis=1, kind="stable")[:, :k]
            return [
                [
                    {"label": self._label(int(j), cols), "probability": self._round(arr[r, j])}
                    for j in row
                ]
                for r, row in enumerate(order)
            ]
        return self._round_any(raw)

    def _is_labels(self, raw: Any) -> bool:
        """Whether ``raw`` holds only labels: no float that is not integral or a class label."""
        if hasattr(raw, "columns"):
            return len(raw.columns) == 1 and self._is_labels(raw.iloc[:, 0].to_numpy())
        if hasattr(raw, "to_numpy"):
            raw = raw.to_numpy()
        if isinstance(raw, str | bool | int | np.bool_ | np.integer | np.str_):
            return True
        if isinstance(raw, float | np.floating):
            v = float(raw)
            return (math.isfinite(v) and v.is_integer()) or v in (self._labels or ())
        if isinstance(raw, list | tuple | np.ndarray):
            arr = raw if isinstance(raw, np.ndarray) else None
            if arr is not None and arr.dtype.kind in "biuUS":
                return True
            items = arr.ravel().tolist() if arr is not None else raw
            return all(not isinstance(v, list | tuple) and self._is_labels(v) for v in items)
        return False

    def _round(self, x: Any) -> float:
        v = float(x)
        return round(v, self.policy.round_digits) if self.policy.round_digits is not None else v

    def _round_any(self, raw: Any) -> Any:
        d = self.policy.round_digits
        if d is None:
            return raw
        if hasattr(raw, "columns") and hasattr(raw, "round"):
            out = raw.round(d)
            for c in out.columns:
                if out[c].dtype.kind == "O":
                    out[c] = out[c].map(self._round_any)
            return out
        if hasattr(raw, "dtype") and hasattr(raw, "map"):
            kind = raw.dtype.kind
            return raw.round(d) if kind == "f" else raw.map(self._round_any) if kind == "O" else raw
        if isinstance(raw, np.ndarray):
            if np.issubdtype(raw.dtype, np.floating):
                return np.round(raw, d)
            if raw.dtype.kind == "O":
                out_arr = np.empty(raw.shape, dtype=object)
                for idx, v in np.ndenumerate(raw):
                    out_arr[idx] = self._round_any(v)
                return out_arr
            return raw
        if isinstance(raw, float | np.floating):
            return round(float(raw), d)
        if isinstance(raw, dict):
            return {k: self._round_any(v) for k, v in raw.items()}
        if isinstance(raw, list | tuple):
            return type(raw)(self._round_any(v) for v in raw)
        return raw


def _refusal(raw: Any, option: str) -> Exception:
    """An MLflow error (so the scoring server answers with it, without the output)."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

    shape = type(raw).__name__
    if hasattr(raw, "columns"):
        shape += f" with columns {[str(c) for c in raw.columns][:20]}"
    elif hasattr(raw, "shape"):
        shape += f" of shape {tuple(raw.shape)}"
    return MlflowException(
        f"output hardening ({option}) cannot reduce this model's output ({shape}) to labels; "
        "it is refused rather than served with its scores. Serve a model whose output is a "
        "2-D probability matrix (one column per class) or labels, or drop the option",
        error_code=INTERNAL_ERROR,
    )
