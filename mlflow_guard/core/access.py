"""Pure authorization decisions from the policy's ``roles`` and ``access`` sections.

A user holds the roles whose member lists name them; an access rule grants its role actions on
experiments and registered models whose names match the rule's globs (``fnmatch`` syntax,
case-sensitive; an empty glob matches nothing). Anything not granted is denied (fail closed).

Server-level actions (user management, tokens of other users, features the policy does not
model) need :data:`SERVER` resources: they are granted to MLflow admin users and to roles with
the ``admin`` action on ``experiments: "*"`` and ``models: "*"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from mlflow_guard.core.decision import Decision
from mlflow_guard.core.policy import Action, Policy

ResourceKind = Literal["experiment", "model", "server"]


@dataclass(frozen=True)
class Resource:
    """What an action applies to: an experiment or registered model by name, or the server."""

    kind: ResourceKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


SERVER = Resource("server", "*")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        user: user name (MLflow basic-auth user or API-token owner).
        is_admin: MLflow's admin flag on the user.
        via: how the caller authenticated (``basic`` or ``token:<id>``).
    """

    user: str
    is_admin: bool = False
    via: str = "basic"


def roles_of(policy: Policy, user: str) -> list[str]:
    """Roles whose member list names ``user``, in policy order."""
    return [role for role, members in policy.roles.items() if user in members]


def decide(policy: Policy, principal: Principal, action: Action, resource: Resource) -> Decision:
    """Decide whether ``principal`` may perform ``action`` on ``resource``."""
    roles = roles_of(policy, principal.user)
    if resource.kind == "server":
        if principal.is_admin:
            return Decision.allow("mlflow-admin", f"{principal.user} is an MLflow admin user")
        for i, rule in enumerate(policy.access):
            if (
                rule.role in roles
                and Action.ADMIN in rule.allow
                and rule.experiments == "*"
                and rule.models == "*"
            ):
                return Decision.allow(f"access[{i}]", f"role {rule.role} administers the server")
        return Decision.deny(
            "server-admin-required",
            f"{principal.user} may not {action.value} on the server: this needs an MLflow admin "
            "user or a role granted 'admin' on experiments '*' and models '*'",
            "ask a server admin, or add such a rule under 'access' in guard.yaml",
        )
    for i, rule in enumerate(policy.access):
        if rule.role not in roles or action not in rule.allow:
            continue
        glob = rule.experiments if resource.kind == "experiment" else rule.models
        if glob and fnmatchcase(resource.name, glob):
            return Decision.allow(
                f"access[{i}]",
                f"role {rule.role} may {action.value} on {resource.kind}s matching {glob!r}",
            )
    held = ", ".join(roles) if roles else "none"
    return Decision.deny(
        "no-matching-rule",
        f"{principal.user} may not {action.value} on {resource.kind} {resource.name!r} "
        f"(roles: {held}; no access rule grants {action.value!r} on a matching "
        f"{'experiments' if resource.kind == 'experiment' else 'models'} glob)",
        "ask a policy owner to grant it under 'access' in guard.yaml",
    )


def may_any(policy: Policy, principal: Principal, action: Action, kind: ResourceKind) -> bool:
    """Whether some rule grants ``action`` on at least one ``kind`` name (for list routes)."""
    if principal.is_admin:
        return True
    roles = roles_of(policy, principal.user)
    for rule in policy.access:
        glob = rule.experiments if kind == "experiment" else rule.models
        if rule.role in roles and action in rule.allow and glob:
            return True
    return False
