"""Who may release quarantined feedback: whoever the policy lets administer the server.

The same decision the server makes for server-level actions
(:func:`mlflow_guard.core.access.decide` on :data:`mlflow_guard.core.access.SERVER`): an MLflow
admin user, or a role granted ``admin`` on experiments ``*`` and models ``*``.
"""

from __future__ import annotations

from mlflow_guard.core import access
from mlflow_guard.core.errors import PolicyViolation
from mlflow_guard.core.policy import Action, Policy


def require_admin(policy: Policy, principal: access.Principal | str | None) -> str:
    """Return the user name if ``principal`` may administer feedback; raise otherwise.

    Raises:
        PolicyViolation: no user, or the policy does not grant it ``admin``.
    """
    if not principal:
        raise PolicyViolation(
            "releasing quarantined feedback needs the 'admin' action and no user was given",
            hint="pass --as USER with a user in a policy role whose access rule allows 'admin' "
            "on experiments '*' and models '*'",
        )
    p = access.Principal(principal) if isinstance(principal, str) else principal
    decision = access.decide(policy, p, Action.ADMIN, access.SERVER)
    if not decision.allowed:
        raise PolicyViolation(
            f"user {p.user!r} may not release quarantined feedback",
            details=list(decision.reasons),
            hint="ask a platform admin, or grant the role in guard.yaml through review",
        )
    return p.user
