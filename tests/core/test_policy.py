"""Policy loading: examples/guard.yaml, error messages, lookup order, schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest

from mlflow_guard.core import errors
from mlflow_guard.core.policy import (
    ENV_VAR,
    Policy,
    Purpose,
    find_policy,
    load_policy,
    parse_duration,
    parse_policy,
    policy_schema,
)
from mlflow_guard.core.trust import TrustStore
from tests.conftest import KeyRing, PolicyWriter

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "guard.yaml"


def test_example_policy_loads_with_its_keys() -> None:
    policy = load_policy(EXAMPLE)
    assert {k.id for k in policy.keys} >= {"ci", "bob", "checkout"}
    store = TrustStore.from_policy(policy)
    assert [k.name for k in store.candidates(Purpose.MODEL)] == ["ci"]


def _err(data: Any) -> errors.PolicyError:
    with pytest.raises(errors.PolicyError) as info:
        parse_policy(data, source=Path("/etc/guard/guard.yaml"))
    assert info.value.exit_code == 2
    return info.value


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"version": 1, "kyes": []}, "kyes: unknown field (not part of policy version 1"),
        (
            {"version": 1, "registry": {"require_signatur": True}},
            "registry.require_signatur: unknown field",
        ),
        ({"version": 2}, "version: Input should be 1"),
        ({}, "version: required field is missing"),
        (
            {"version": 1, "keys": [{"id": "a", "public_key": "k", "purposes": "model"}]},
            "keys[0].purposes: Input should be a valid list",
        ),
        (
            {"version": 1, "keys": [{"id": "a", "public_key": "k", "purposes": ["modle"]}]},
            "keys[0].purposes[0]: Input should be 'model'",
        ),
        (
            {
                "version": 1,
                "keys": [{"id": "a", "public_key": "k", "purposes": ["model"], "not_after": "x"}],
            },
            "keys[0].not_after: Input should be a valid datetime",
        ),
        (
            {"version": 1, "registry": {"protected": [{"tag": ""}]}},
            "registry.protected[0].tag: String should have at least 1 character",
        ),
        (
            {"version": 1, "registry": {"protected": [{"alias": "p", "approvals": "two"}]}},
            "registry.protected[0].approvals: Input should be a valid integer",
        ),
        (
            {"version": 1, "registry": {"protected": [{"alias": "p", "stage": "Production"}]}},
            "registry.protected[0]: each protected entry needs exactly one of",
        ),
        (
            {"version": 1, "access": [{"role": "ghost", "allow": ["read"]}]},
            "access[0].role: names role 'ghost', which is not defined under 'roles'",
        ),
        (
            {
                "version": 1,
                "keys": [
                    {"id": "a", "public_key": "k", "purposes": ["model"]},
                    {"id": "a", "public_key": "j", "purposes": ["model"]},
                ],
            },
            "keys: ids must be unique; repeated: a",
        ),
        ({"version": 1, "feedback": {"tolerance": "5 minutes"}}, "feedback.tolerance: expected"),
        (["version", 1], "(top level): expected a mapping, got list"),
    ],
)
def test_errors_name_file_field_and_expectation(data: Any, expected: str) -> None:
    err = _err(data)
    assert err.summary == "invalid policy /etc/guard/guard.yaml"
    assert any(d.startswith("/etc/guard/guard.yaml: ") and expected in d for d in err.details), (
        err.details
    )
    assert "Value error" not in err.diagnostics()
    assert err.hint


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    p = tmp_path / "guard.yaml"
    p.write_text("version: 1\nkeys: [\n  {id: a\n")
    with pytest.raises(errors.PolicyError, match=r"is not valid YAML at line \d+, column \d+"):
        load_policy(p)


def test_missing_key_file_named(write_policy: PolicyWriter) -> None:
    p = write_policy(
        raw={"version": 1, "keys": [{"id": "a", "public_key": "k.pub", "purposes": ["model"]}]}
    )
    with pytest.raises(errors.PolicyError) as info:
        load_policy(p)
    assert info.value.details == [
        f"{p}: keys[0].public_key: file not found: {p.parent.resolve() / 'k.pub'}"
    ]
    assert load_policy(p, check_files=False).keys[0].id == "a"


def test_relative_key_paths_resolve_from_policy_folder(
    keyring: KeyRing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    (folder / "keys").mkdir(parents=True)
    (folder / "keys" / "ci.pub").write_bytes(keyring["model"].public.read_bytes())
    (folder / "guard.yaml").write_text(
        "version: 1\nkeys: [{id: ci, public_key: keys/ci.pub, purposes: [model]}]\n"
    )
    monkeypatch.chdir(tmp_path)
    store = TrustStore.from_policy(load_policy(Path("conf/guard.yaml")))
    assert store.entries[0].key_id == keyring["model"].key_id


def test_lookup_order(
    clean_env: Path, write_policy: PolicyWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(errors.PolicyError, match="no policy found") as info:
        find_policy()
    assert "--policy" in info.value.details[0]
    (clean_env / "guard.yaml").write_text("version: 1\n")
    assert find_policy() == Path("guard.yaml")
    env_policy = write_policy(raw={"version": 1})
    monkeypatch.setenv(ENV_VAR, str(env_policy))
    assert find_policy() == env_policy
    explicit = write_policy(raw={"version": 1})
    assert find_policy(explicit) == explicit
    monkeypatch.setenv(ENV_VAR, str(clean_env / "missing.yaml"))
    with pytest.raises(errors.PolicyError, match="cannot read policy"):
        load_policy()


def test_policy_is_frozen_and_remembers_its_folder(tmp_path: Path) -> None:
    policy = parse_policy(
        {
            "version": 1,
            "keys": [
                {
                    "id": "a",
                    "public_key": "a.pub",
                    "purposes": ["model"],
                    "not_after": "2030-01-01T00:00:00",
                }
            ],
        },
        source=tmp_path / "guard.yaml",
    )
    with pytest.raises(pydantic.ValidationError):
        policy.keys[0].id = "b"  # type: ignore[misc]
    assert policy.base_dir == tmp_path


def test_not_after_boundary(keyring: KeyRing, write_policy: PolicyWriter) -> None:
    pair = keyring["model"]
    limit = datetime(2030, 1, 1, tzinfo=UTC)
    store = TrustStore.from_policy(
        load_policy(write_policy({"ci": (pair, ["model"])}, not_after={"ci": limit}))
    )
    entry = store.entries[0]
    assert store.check(entry, Purpose.MODEL, at=limit) is entry
    with pytest.raises(errors.KeyNotTrusted, match="expired at 2030-01-01T00:00:00"):
        store.check(entry, Purpose.MODEL, at=datetime(2030, 1, 1, 0, 0, 1))  # naive = UTC
    assert store.candidates(Purpose.MODEL, at=datetime(2031, 1, 1, tzinfo=UTC)) == []


def test_schema_is_json_schema() -> None:
    schema = policy_schema()
    json.dumps(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert "version" in schema["required"]
    assert {"keys", "revoked", "roles", "access", "registry"} <= set(schema["properties"])
    for name, definition in schema.get("$defs", {}).items():
        if definition.get("type") == "object" and "properties" in definition:
            assert definition.get("additionalProperties") is False, name
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    for ref in refs:
        assert ref.startswith("#/$defs/")
        assert ref.removeprefix("#/$defs/") in schema["$defs"]
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate({"version": 1, "keys": []}, schema)


def test_policy_model_rejects_unknown_everywhere() -> None:
    assert Policy.model_config.get("extra") == "forbid"
    assert Policy.model_config.get("frozen") is True


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("999999999999d", "between 0 and 100 years"),
        (float("inf"), "between 0 and 100 years"),
        (float("nan"), "between 0 and 100 years"),
        (10**30, "between 0 and 100 years"),
        (-1, "between 0 and 100 years"),
        (True, "expected a duration"),
        ("5 minutes", "expected a duration"),
    ],
)
def test_bad_durations_are_policy_errors(value: Any, message: str) -> None:
    """Never an OverflowError (exit 3): every bad duration names its field."""
    err = _err({"version": 1, "feedback": {"tolerance": value}})
    assert any("feedback.tolerance: " in d and message in d for d in err.details), err.details


@pytest.mark.parametrize(
    ("value", "seconds"), [("300s", 300), ("15m", 900), ("2w", 1209600), (1.5, 1.5)]
)
def test_durations(value: Any, seconds: float) -> None:
    assert parse_duration(value).total_seconds() == seconds


def test_duplicate_yaml_keys_refused(tmp_path: Path) -> None:
    """``revoked`` twice would let the second list silently replace the first."""
    p = tmp_path / "guard.yaml"
    p.write_text("version: 1\nrevoked: [ci]\nkeys: []\nrevoked: []\n")
    with pytest.raises(errors.PolicyError) as info:
        load_policy(p)
    assert "at line 4, column 1" in info.value.summary
    assert "found duplicate key 'revoked'" in info.value.diagnostics()


@pytest.mark.parametrize("key", ["? [a]\n: 1\n", "? {a: 1}\n: 1\n", "version: 1\n? [a, b]\n: x\n"])
def test_unhashable_yaml_keys_are_policy_errors(tmp_path: Path, key: str) -> None:
    """A list or mapping as a key is a YAML error naming the line (it was exit 3: TypeError)."""
    p = tmp_path / "guard.yaml"
    p.write_text(key)
    with pytest.raises(errors.PolicyError) as info:
        load_policy(p)
    assert "is not valid YAML at line" in info.value.summary
    assert "found unhashable key" in info.value.diagnostics()
    p.write_text("version: 1\nroles: {a: [x], b: [y]}\nkeys: [{id: k, id: j}]\n")
    with pytest.raises(errors.PolicyError, match="not valid YAML"):
        load_policy(p)


def test_policy_file_must_be_utf8_regular_file(tmp_path: Path) -> None:
    p = tmp_path / "guard.yaml"
    p.write_bytes(b"version: 1\nroles: {r\xe9viewer: [bob]}\n")
    with pytest.raises(errors.PolicyError, match="is not UTF-8 text"):
        load_policy(p)
    with pytest.raises(errors.PolicyError, match="not a regular file"):
        load_policy("/dev/zero")
