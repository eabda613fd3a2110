"""Pure authorization decisions (core.access, core.decision): fail closed, explain why."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_guard.core.access import SERVER, Principal, Resource, decide, may_any, roles_of
from mlflow_guard.core.decision import Decision
from mlflow_guard.core.policy import Action, parse_policy

POLICY = parse_policy(
    {
        "version": 1,
        "roles": {"ds": ["alice"], "rev": ["bob"], "ops": ["olga"], "empty": []},
        "access": [
            {"role": "ds", "allow": ["read", "log"], "experiments": "team-*", "models": "fraud-*"},
            {"role": "rev", "allow": ["read"], "experiments": "*", "models": ""},
            {"role": "ops", "allow": ["admin"], "experiments": "*", "models": "*"},
        ],
    },
    source=Path("guard.yaml"),
)
ALICE, BOB, MALLORY = Principal("alice"), Principal("bob"), Principal("mallory")


@pytest.mark.parametrize(
    ("who", "action", "resource", "allowed"),
    [
        (ALICE, Action.LOG, Resource("experiment", "team-a"), True),
        (ALICE, Action.LOG, Resource("experiment", "Team-a"), False),  # case-sensitive
        (ALICE, Action.REGISTER, Resource("model", "fraud-x"), False),  # action not granted
        (ALICE, Action.READ, Resource("model", "fraud-x"), True),
        (ALICE, Action.READ, Resource("model", "fraudx"), False),
        (BOB, Action.READ, Resource("experiment", "anything"), True),
        (BOB, Action.READ, Resource("model", "fraud-x"), False),  # empty glob matches nothing
        (BOB, Action.LOG, Resource("experiment", "team-a"), False),
        (MALLORY, Action.READ, Resource("experiment", "team-a"), False),
        (ALICE, Action.ADMIN, SERVER, False),
        (Principal("olga"), Action.ADMIN, SERVER, True),
        (Principal("x", is_admin=True), Action.ADMIN, SERVER, True),
        (Principal("x", is_admin=True), Action.READ, Resource("experiment", "team-a"), False),
    ],
)
def test_decide(who: Principal, action: Action, resource: Resource, allowed: bool) -> None:
    d = decide(POLICY, who, action, resource)
    assert d.allowed is allowed
    assert d.reasons
    if not allowed:
        assert who.user in d.reasons[0]
        assert "guard.yaml" in d.reasons[-1] or "admin" in d.reasons[-1]


def test_deny_reason_names_roles_and_resource() -> None:
    d = decide(POLICY, MALLORY, Action.READ, Resource("experiment", "team-a"))
    assert d.rule == "no-matching-rule"
    assert "roles: none" in d.reasons[0]
    assert "'team-a'" in d.reasons[0]


def test_may_any_and_roles() -> None:
    assert roles_of(POLICY, "alice") == ["ds"]
    assert may_any(POLICY, ALICE, Action.READ, "model")
    assert not may_any(POLICY, BOB, Action.READ, "model")
    assert not may_any(POLICY, MALLORY, Action.READ, "experiment")


def test_decision_has_no_truth_value_and_empty_all_of_denies() -> None:
    with pytest.raises(TypeError):
        bool(Decision.allow("x"))
    assert Decision.all_of([]).allowed is False
    mixed = Decision.all_of([Decision.allow("a"), Decision.deny("b", "no")])
    assert (mixed.allowed, mixed.rule) == (False, "b")
    assert Decision.all_of([Decision.allow("a", "r1"), Decision.allow("b", "r2")]).reasons == (
        "r1",
        "r2",
    )
