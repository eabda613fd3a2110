"""Who may release quarantined feedback: users granted the ``admin`` action by the policy."""

from __future__ import annotations

from mlflow_guard.core.errors import PolicyViolation
from mlflow_guard.core.policy import Action, Policy


def admin_roles(policy: Policy, user: str) -> list[str]:
    """The roles of ``user`` whose access rules grant ``admin``."""
    granting = {r.role for r in policy.access if Action.ADMIN in r.allow}
    return sorted(
        role for role, users in policy.roles.items() if user in users and role in granting
    )


def require_admin(policy: Policy, user: str | None) -> str:
    """Return ``user`` if the policy grants it ``admin``.

    Raises:
        PolicyViolation: no user, or the user has no role whose access rule allows ``admin``.
    """
    if not user:
        raise PolicyViolation(
            "releasing quarantined feedback needs the 'admin' action and no user was given",
            hint="pass --as USER with a user in a policy role whose access rule allows 'admin'",
        )
    if not admin_roles(policy, user):
        raise PolicyViolation(
            f"user {user!r} may not release quarantined feedback",
            details=["expected: a role under 'roles' with an access rule allowing 'admin'"],
            hint="ask a platform admin, or grant the role in guard.yaml through review",
        )
    return user
