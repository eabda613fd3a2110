"""Red-team findings checked without a server: how guard reads what a request says."""

from __future__ import annotations

from mlflow_guard.server.asgi_layer import merged_headers


def test_repeated_headers_are_joined_not_overwritten() -> None:
    """Starlette hands a handler the first of repeated headers; a dict would keep the last."""
    raw = [
        (b"X-Mlflow-Experiment-Id", b"2"),
        (b"x-mlflow-experiment-id", b"1"),
        (b"Authorization", b"Basic a"),
    ]
    assert merged_headers(raw) == {
        "x-mlflow-experiment-id": "2, 1",
        "authorization": "Basic a",
    }
