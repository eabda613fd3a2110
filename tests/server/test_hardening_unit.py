"""Input checks of the server adapter, without a server."""

from __future__ import annotations

import json

import pytest

from mlflow_guard.server.hardening import (
    check_artifact_path,
    copy_source,
    guard_tag_keys,
    source_run_and_experiment,
    split_copied_guard_tags,
)
from mlflow_guard.server.request_view import BadRequest, RequestView, parse_json_body


@pytest.mark.parametrize(
    "path",
    ["1/../2", "/etc/passwd", "1/a\\b", "1/%2e%2e/x", "1/./x", "C:/x", "1/a\x00b", ".."],
)
def test_unsafe_artifact_paths(path: str) -> None:
    with pytest.raises(BadRequest, match="unsafe artifact path"):
        check_artifact_path(path)


@pytest.mark.parametrize("path", ["1/abc/artifacts/model/MLmodel", "12/x y.txt", "1/100%.txt"])
def test_safe_artifact_paths(path: str) -> None:
    assert check_artifact_path(path) == path


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("runs:/abc123/model", ("abc123", None, None)),
        ("models:/m-0123abcd", (None, "m-0123abcd", None)),
        ("mlflow-artifacts:/5/models/m-77/artifacts", (None, "m-77", None)),
        ("mlflow-artifacts:/5/abc123/artifacts/model", ("abc123", None, None)),
    ],
)
def test_sources_accepted(source: str, expected: tuple[str | None, ...]) -> None:
    assert source_run_and_experiment(source) == expected


@pytest.mark.parametrize(
    "source", ["", "file:///etc", "/abs", "s3://b/k", "runs:/../x", "models:/name/1", "x\\y"]
)
def test_sources_refused(source: str) -> None:
    with pytest.raises(BadRequest):
        source_run_and_experiment(source)


def test_guard_tag_keys() -> None:
    body = {"tags": [{"key": "a"}, {"key": " MLflow_Guard.user"}], "key": "mlflow_guard.x"}
    assert guard_tag_keys(body, key_field=False) == [" MLflow_Guard.user"]
    assert guard_tag_keys(body, key_field=True) == [" MLflow_Guard.user", "mlflow_guard.x"]
    assert guard_tag_keys({"tags": {"mlflow_guard.k": "v"}}, key_field=False) == ["mlflow_guard.k"]
    assert guard_tag_keys(None, key_field=True, extra=("mlflow_guard.t",)) == ["mlflow_guard.t"]


def test_parse_json_body() -> None:
    assert parse_json_body(b"", None, 10) is None
    assert parse_json_body(json.dumps(json.dumps({"a": 1})).encode(), None, 100) == {"a": 1}
    with pytest.raises(BadRequest) as e:
        parse_json_body(b"{}" * 10, None, 5)
    assert e.value.status == 413
    for bad in (b"{", b"[]", b"1", b'"x"'):
        with pytest.raises(BadRequest):
            parse_json_body(bad, None, 100)


def test_params_follow_mlflow_precedence() -> None:
    get = RequestView("GET", "/p", "e", query={"run_id": ["a", "b"]}, body={"run_id": "z"})
    assert get.param("run_id") == "a"
    assert get.param_list("run_id") == ["a", "b"]
    get_body = RequestView("GET", "/p", "e", query={}, body={"run_id": "z"})
    assert get_body.param("run_id") == "z"
    post = RequestView("POST", "/p", "e", query={"run_id": ["q"]}, body={"run_id": "z"})
    assert post.param("run_id") == "z"
    with pytest.raises(BadRequest):
        RequestView("POST", "/p", "e", body={"run_id": {"x": 1}}).param("run_id")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("models:/fraud-detector/3", ("fraud-detector", "3")),
        ("models:/Fraud Detector/12", ("Fraud Detector", "12")),
        ("models:/fraud@champion", None),  # aliases are resolved by nobody but the caller
        ("models:/fraud/latest", None),
        ("models:/fraud/3/model", None),
        ("models:/m-0123abcd", None),  # a logged model, not a registered version
        ("models:/../3", None),
        ("models:/a%2Fb/3", None),
        ("models:/ fraud/3", None),
        ("models:/fraud/3\n", None),
        ("runs:/abc/model", None),
    ],
)
def test_copy_source_accepts_only_name_and_decimal_version(
    source: str, expected: tuple[str, str] | None
) -> None:
    assert copy_source(source) == expected


def test_split_copied_guard_tags_keeps_plain_tags_and_names_forged_ones() -> None:
    source = {"mlflow_guard.user": "alice", "mlflow_guard.root_sha256": "ab" * 32, "team": "x"}
    tags = [
        ("team", "x"),
        ("mlflow_guard.user", "alice"),  # repeated from the source: dropped
        ("mlflow_guard.root_sha256", "00" * 32),  # differs: forged
        ("MLFLOW_GUARD.approved", "yes"),  # not on the source (any case): forged
        ("note", "copied"),
    ]
    kept, forged = split_copied_guard_tags(tags, lambda t: t, source)
    assert kept == [("team", "x"), ("note", "copied")]
    assert forged == ["mlflow_guard.root_sha256", "MLFLOW_GUARD.approved"]
