"""Which registered model versions a signing key signed, and which signers are no longer trusted.

The incident question after a key is revoked or expires: *what did it sign, and does any of it
still hold a protected alias, stage or tag?* The guard server and the ``guard+`` stores record
the verified signer of every version they registered (``mlflow_guard.signer_key_id``, a
server-only tag), so the answer is one tag search over the registry. Each version's signer is
judged against the current policy: trusted for ``model``, revoked, expired, trusted for other
purposes only, or unknown to the policy. Versions registered without guard carry no signer tag
and are counted, not judged.

Works with any MLflow registry the client can reach (a guard server with an account that may
read the models, or a ``guard+sqlite://`` store); MLflow is imported by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow_guard.core.approvals import Target, protected_rule
from mlflow_guard.core.errors import KeyNotTrusted
from mlflow_guard.core.policy import Policy, Purpose
from mlflow_guard.core.trust import TrustStore
from mlflow_guard.plugins.gate import TAG_PREFIX

SIGNER_KEY_TAG = TAG_PREFIX + "signer_key_id"
SIGNER_TAG = TAG_PREFIX + "signer"
USER_TAG = TAG_PREFIX + "user"
PAGE = 1000
_STAGES = {"staging": "Staging", "production": "Production", "archived": "Archived"}


@dataclass(frozen=True)
class SignedVersion:
    """One registered version with a recorded signer, judged against the current policy.

    Attributes:
        name: registered model name.
        version: version number.
        key_id: sha256 key id of the signer (recorded at registration).
        signer: the policy name the key had at registration.
        status: ``trusted``, ``revoked``, ``expired``, ``not-for-model`` or ``unknown``.
        reason: the trust store's words for a status other than ``trusted``.
        protected: protected targets (``alias:production`` …) the version holds now.
        created_by: ``mlflow_guard.user`` (the authenticated registrant).
    """

    name: str
    version: str
    key_id: str
    signer: str
    status: str
    reason: str
    protected: list[str] = field(default_factory=list)
    created_by: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {
            "name": self.name,
            "version": self.version,
            "key_id": self.key_id,
            "signer": self.signer,
            "status": self.status,
            "reason": self.reason,
            "protected": self.protected,
            "created_by": self.created_by,
        }


def key_status(trust: TrustStore, key_id: str, at: datetime | None = None) -> tuple[str, str]:
    """``(status, reason)`` of ``key_id`` for signing models under the current policy."""
    entries = [e for e in trust.entries if e.key_id == key_id]
    if not entries:
        return "unknown", "the key is not in the policy (removed, or never trusted)"
    reasons: list[tuple[str, str]] = []
    for e in entries:  # one public key may be listed under several ids
        try:
            trust.check(e, Purpose.MODEL, at or datetime.now(UTC))
            return "trusted", ""
        except KeyNotTrusted as err:
            text = err.summary
            kind = (
                "revoked"
                if "revoked" in text
                else "expired"
                if "expired" in text
                else "not-for-model"
            )
            reasons.append((kind, text))
    order = {"revoked": 0, "expired": 1, "not-for-model": 2}
    return min(reasons, key=lambda r: order[r[0]])


def _protected(policy: Policy, mv: Any, aliases: list[str]) -> list[str]:
    targets = [Target("alias", a) for a in aliases]
    stage = str(getattr(mv, "current_stage", "") or "None")
    targets.append(Target("stage", _STAGES.get(stage.lower(), stage)))
    targets += [Target("tag", str(k)) for k in (mv.tags or {})]
    return sorted(str(t) for t in targets if protected_rule(policy.registry.protected, t))


def _versions(client: Any, filter_string: str) -> list[Any]:
    out: list[Any] = []
    token: str | None = None
    while True:
        page = client.search_model_versions(
            filter_string, max_results=PAGE, order_by=["name ASC"], page_token=token
        )
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return out


@dataclass(frozen=True)
class Usage:
    """Result of :func:`signed_versions`.

    Attributes:
        versions: the guarded versions asked for (all, or those signed by the given keys).
        guarded: how many versions in the registry carry a recorded signer.
        unsigned: how many carry none (registered without guard).
    """

    versions: list[SignedVersion]
    guarded: int
    unsigned: int


def signed_versions(client: Any, policy: Policy, key_ids: list[str] | None = None) -> Usage:
    """Guarded versions (all, or those signed by ``key_ids``), judged against ``policy``.

    Args:
        client: an ``mlflow.MlflowClient`` (or anything with its registry search methods).
        policy: the current policy (trust and protected targets).
        key_ids: only versions signed by these keys; ``None`` for every guarded version.
    """
    trust = TrustStore.from_policy(policy)
    found = _versions(client, f"tags.`{SIGNER_KEY_TAG}` LIKE '%'")
    wanted = set(key_ids) if key_ids is not None else None
    aliases: dict[str, dict[str, list[str]]] = {}
    out: list[SignedVersion] = []
    for mv in found:
        tags = dict(mv.tags or {})
        kid = str(tags.get(SIGNER_KEY_TAG, ""))
        if wanted is not None and kid not in wanted:
            continue
        if mv.name not in aliases:
            by_version: dict[str, list[str]] = {}
            for alias, v in (client.get_registered_model(mv.name).aliases or {}).items():
                by_version.setdefault(str(v), []).append(str(alias))
            aliases[mv.name] = by_version
        status, reason = key_status(trust, kid)
        out.append(
            SignedVersion(
                name=str(mv.name),
                version=str(mv.version),
                key_id=kid,
                signer=str(tags.get(SIGNER_TAG, "")),
                status=status,
                reason=reason,
                protected=_protected(policy, mv, aliases[mv.name].get(str(mv.version), [])),
                created_by=str(tags.get(USER_TAG, "")),
            )
        )
    out.sort(key=lambda s: (s.name, int(s.version) if s.version.isdigit() else 0))
    return Usage(out, len(found), len(_versions(client, "")) - len(found))
