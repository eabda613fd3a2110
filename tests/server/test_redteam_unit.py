"""Red-team findings checked without a server: how guard reads what a request says."""

from __future__ import annotations

import pytest

from mlflow_guard.server.asgi_layer import merged_headers
from mlflow_guard.server.hardening import run_author_rewrite


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


@pytest.mark.parametrize(
    ("endpoint", "body", "expected"),
    [
        ("_set_tag", {"key": "mlflow.user", "value": "bob"}, "set 'mlflow.user' to 'bob'"),
        ("_set_tag", {"key": "mlflow.user", "value": "alice"}, None),
        ("_set_tag", {"key": "team", "value": "bob"}, None),
        (
            "_log_batch",
            {"tags": [{"key": "mlflow.user", "value": "alice"}, {"key": "mlflow.user"}]},
            "set 'mlflow.user' to None",
        ),
        ("_log_batch", {"tags": [{"key": "a", "value": "b"}], "metrics": []}, None),
        ("_delete_tag", {"key": "mlflow.user"}, "delete 'mlflow.user'"),
        ("_set_experiment_tag", {"key": "mlflow.user", "value": "bob"}, None),
        ("_set_tag", "not a dict", None),
    ],
)
def test_run_author_rewrite(endpoint: str, body: object, expected: str | None) -> None:
    assert run_author_rewrite(endpoint, body, "alice") == expected


def test_identifiers_with_a_trailing_newline_are_malformed() -> None:
    """``$`` also matches before a final newline: ids, experiment ids and token secrets are
    matched to the end of the string (``\\Z``), so ``"abc\\n"`` is not a well-formed id."""
    from mlflow_guard.server.request_view import BadRequest
    from mlflow_guard.server.resolve import Backend
    from mlflow_guard.store import tokens

    token_id, secret = tokens.new_secret()
    assert tokens.parse_token_id(secret) == token_id
    assert tokens.parse_token_id(secret + "\n") is None
    backend = Backend()  # the id checks come before any store access
    for call, value, message in [
        (backend.run_experiment, "a" * 32 + "\n", "malformed run id"),
        (backend.experiment, "7\n", "must be a decimal number"),
        (backend.logged_model_experiment, "m-" + "a" * 32 + "\n", "malformed logged model id"),
    ]:
        with pytest.raises(BadRequest, match=message):
            call(value)
