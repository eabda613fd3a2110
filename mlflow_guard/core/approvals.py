"""Promotion approvals: signed approval attestations and the rules that decide what counts.

A *signed* approval is an in-toto Statement v1 (predicate ``https://mlflow-guard.dev/approval/v1``)
in a DSSE envelope, signed by a key trusted for purpose ``approval``; the approver's identity is
the key's policy id (``bob``), which must be a member of an approver role. An *authenticated*
approval is recorded by the server for a logged-in user holding an approver role. Both bind to
the exact model version, target (alias, stage or tag) and root digest.

What counts (:func:`evaluate`): same model, version, target and root digest; not expired (its own
``expires_at`` and the policy's ``approval_ttl``); approver in ``approver_roles``; with separation
of duties, not the run's creator, the version's creator or the model's signer; one identity counts
once (its latest decision). A rejection by an approver blocks until that approver withdraws it
(approves or withdraws later) or a new version is registered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlflow_guard.core import dsse, intoto, keys
from mlflow_guard.core.decision import Decision
from mlflow_guard.core.errors import SignatureInvalid, UsageError
from mlflow_guard.core.gates import GateResult
from mlflow_guard.core.gates import evaluate as evaluate_gates
from mlflow_guard.core.policy import ProtectedAlias, ProtectedStage, ProtectedTag, Purpose
from mlflow_guard.core.trust import TrustStore

PREDICATE_TYPE = "https://mlflow-guard.dev/approval/v1"
CLOCK_SKEW = timedelta(seconds=60)
TargetKind = Literal["alias", "stage", "tag"]
DecisionKind = Literal["approve", "reject", "withdraw"]
ProtectedRule = ProtectedAlias | ProtectedStage | ProtectedTag


@dataclass(frozen=True, order=True)
class Target:
    """A promotion target: ``alias:production``, ``stage:Production`` or ``tag:release``."""

    kind: TargetKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse ``kind:name``; a bare name means an alias.

        Raises:
            UsageError: unknown kind or empty name.
        """
        kind, sep, name = text.partition(":")
        if not sep:
            kind, name = "alias", text
        if kind not in ("alias", "stage", "tag") or not name:
            raise UsageError(
                f"bad promotion target {text!r}",
                hint="write alias:NAME, stage:NAME or tag:NAME (a bare name is an alias)",
            )
        return cls(kind, name)  # type: ignore[arg-type]

    @classmethod
    def of_rule(cls, rule: ProtectedRule) -> Target:
        """The target a protected-target policy entry names."""
        if isinstance(rule, ProtectedAlias):
            return cls("alias", rule.alias)
        if isinstance(rule, ProtectedStage):
            return cls("stage", rule.stage)
        return cls("tag", rule.tag)


class _TargetModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: TargetKind
    name: str = Field(min_length=1)


class ApprovalPredicate(BaseModel):
    """The ``predicate`` of an approval statement."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    version: str = Field(min_length=1)
    target: _TargetModel
    root_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    approver_key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    decision: DecisionKind
    issued_at: datetime
    expires_at: datetime | None = None
    comment: str = ""


@dataclass(frozen=True)
class Approval:
    """One approver's decision on a model version and target."""

    model: str
    version: str
    target: Target
    root_digest: str
    approver: str
    decision: DecisionKind
    issued_at: datetime
    kind: Literal["signed", "authenticated"]
    expires_at: datetime | None = None
    comment: str = ""
    key_id: str | None = None


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def create_signed(
    model: str,
    version: str,
    target: Target,
    root_digest: str,
    signer: keys.Signer,
    *,
    decision: DecisionKind = "approve",
    ttl: timedelta | None = timedelta(days=7),
    comment: str = "",
    now: datetime | None = None,
) -> dsse.Envelope:
    """Sign an approval (or rejection/withdrawal) of a model version for ``target``."""
    issued = _utc(now or datetime.now(UTC)).replace(microsecond=0)
    pred = ApprovalPredicate(
        model=model,
        version=str(version),
        target=_TargetModel(kind=target.kind, name=target.name),
        root_digest=root_digest,
        approver_key_id=signer.key_id,
        decision=decision,
        issued_at=issued,
        expires_at=issued + ttl if ttl else None,
        comment=comment,
    )
    statement = intoto.Statement(
        subject=[intoto.Subject(name=f"models:/{model}/{version}", digest={"sha256": root_digest})],
        predicate_type=PREDICATE_TYPE,
        predicate=pred.model_dump(mode="json"),
    )
    return intoto.sign_statement(statement, signer)


def verify_signed(
    data: bytes | str | dict[str, Any], trust: TrustStore, *, at: datetime | None = None
) -> Approval:
    """Verify a signed approval: DSSE signature by a key trusted for ``approval``, then content.

    Raises:
        SignatureInvalid: malformed, not an approval, subject/predicate inconsistent, bad signature.
        KeyNotTrusted: signed by an unknown, revoked, expired or non-approval key.
    """
    statement, key = intoto.verify_attestation(
        data, trust, Purpose.APPROVAL, PREDICATE_TYPE, source="approval"
    )
    if at is not None:
        trust.check(key, Purpose.APPROVAL, at)
    try:
        pred = ApprovalPredicate.model_validate(statement.predicate)
    except ValidationError as e:
        raise SignatureInvalid(
            "approval predicate is malformed",
            details=[f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()],
        ) from e
    subject = statement.subject[0]
    if len(statement.subject) != 1 or subject.digest.get("sha256") != pred.root_digest:
        raise SignatureInvalid("approval subject does not match its predicate's root digest")
    if subject.name != f"models:/{pred.model}/{pred.version}":
        raise SignatureInvalid("approval subject name does not match its model and version")
    if pred.approver_key_id != key.key_id:
        raise SignatureInvalid(
            "approval names another approver key than the one that signed it",
            details=[f"names {pred.approver_key_id[:16]}…, signed by {key.key_id[:16]}…"],
        )
    return Approval(
        model=pred.model,
        version=pred.version,
        target=Target(pred.target.kind, pred.target.name),
        root_digest=pred.root_digest,
        approver=key.name,
        decision=pred.decision,
        issued_at=_utc(pred.issued_at),
        kind="signed",
        expires_at=_utc(pred.expires_at) if pred.expires_at else None,
        comment=pred.comment,
        key_id=key.key_id,
    )


def protected_rule(protected: Iterable[ProtectedRule], target: Target) -> ProtectedRule | None:
    """The policy's protected-target entry for ``target``, or ``None``.

    Names compare case-insensitively (fail closed): ``PRODUCTION`` is as protected as
    ``production``, since some databases collate them together and users read them alike.
    """
    for rule in protected:
        t = Target.of_rule(rule)
        if t.kind == target.kind and t.name.casefold() == target.name.casefold():
            return rule
    return None


@dataclass(frozen=True)
class PromotionSubject:
    """What the server established itself about the version being promoted (never client claims).

    Attributes:
        root_digest: recomputed from the artifact store at promotion time.
        run_creator / version_creator: authenticated users recorded by the server.
        signer_identities: the model signer's policy key id and key fingerprint.
        metrics: latest metric values of the source run.
    """

    model: str
    version: str
    target: Target
    root_digest: str
    run_creator: str | None = None
    version_creator: str | None = None
    signer_identities: frozenset[str] = frozenset()
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PromotionStatus:
    """Everything a reviewer needs: gates, counted and ignored approvals, rejections, decision."""

    decision: Decision
    gates: tuple[GateResult, ...]
    counted: tuple[Approval, ...]
    ignored: tuple[tuple[Approval, str], ...]
    rejections: tuple[Approval, ...]
    required: int


def _why_ignored(
    a: Approval,
    s: PromotionSubject,
    rule: ProtectedRule,
    roles: Mapping[str, Sequence[str]],
    now: datetime,
) -> str | None:
    if (a.model, a.version) != (s.model, str(s.version)):
        return f"is for {a.model} version {a.version}, not {s.model} version {s.version}"
    if a.target != s.target:
        return f"is for {a.target}, not {s.target}"
    if a.decision != "withdraw" and a.root_digest != s.root_digest:
        return (
            f"approves root digest {a.root_digest[:12]}…, but the version's artifacts now hash "
            f"to {s.root_digest[:12]}…"
        )
    if a.issued_at > now + CLOCK_SKEW:
        return f"is dated in the future ({a.issued_at.isoformat()})"
    if a.decision == "approve":
        if a.expires_at is not None and now > a.expires_at:
            return f"expired at {a.expires_at.isoformat()}"
        if rule.approval_ttl is not None and now > a.issued_at + rule.approval_ttl:
            return f"is older than the policy's approval_ttl ({rule.approval_ttl})"
    if rule.approver_roles:
        held = {r for r, members in roles.items() if a.approver in members}
        if not held & set(rule.approver_roles):
            return f"{a.approver} holds none of the approver roles {sorted(rule.approver_roles)}"
    if a.decision == "approve" and rule.separation_of_duties:
        if a.approver in (s.run_creator, s.version_creator):
            return f"{a.approver} created the run or the version (separation of duties)"
        if a.approver in s.signer_identities or (a.key_id and a.key_id in s.signer_identities):
            return f"{a.approver} signed the model (separation of duties)"
    return None


def evaluate(
    subject: PromotionSubject,
    rule: ProtectedRule,
    approvals: Iterable[Approval],
    roles: Mapping[str, Sequence[str]],
    *,
    now: datetime | None = None,
) -> PromotionStatus:
    """Decide whether ``subject`` may be promoted under ``rule`` given the recorded approvals."""
    t = _utc(now or datetime.now(UTC))
    gates = tuple(evaluate_gates(rule.gates.metrics, subject.metrics))
    ignored: list[tuple[Approval, str]] = []
    latest: dict[str, Approval] = {}
    for a in sorted(approvals, key=lambda x: x.issued_at):
        why = _why_ignored(a, subject, rule, roles, t)
        if why:
            ignored.append((a, why))
            continue
        latest[a.approver] = a
    counted = tuple(a for a in latest.values() if a.decision == "approve")
    rejections = tuple(a for a in latest.values() if a.decision == "reject")
    reasons: list[str] = []
    failed = [g for g in gates if not g.passed]
    for g in failed:
        reasons.append(f"metric gate failed: {g.describe()}")
    if len(counted) < rule.approvals:
        who = ", ".join(sorted(a.approver for a in counted)) or "none"
        reasons.append(
            f"{len(counted)} of {rule.approvals} required approvals for {subject.target} "
            f"(counted: {who}); ask a reviewer with role {sorted(rule.approver_roles) or 'any'} "
            f"to approve"
        )
    for r in rejections:
        reasons.append(
            f"rejected by {r.approver} at {r.issued_at.isoformat()}"
            + (f": {r.comment}" if r.comment else "")
            + "; blocks until withdrawn or a new version is registered"
        )
    rule_name = f"protected:{subject.target}"
    if reasons:
        decision = Decision.deny(rule_name, *reasons)
    else:
        decision = Decision.allow(
            rule_name,
            f"{len(counted)} approvals ({', '.join(sorted(a.approver for a in counted))}), "
            f"{len(gates)} metric gates passed",
        )
    return PromotionStatus(
        decision=decision,
        gates=gates,
        counted=counted,
        ignored=tuple(ignored),
        rejections=rejections,
        required=rule.approvals,
    )


def why_not_counted(
    approval: Approval,
    subject: PromotionSubject,
    rule: ProtectedRule,
    roles: Mapping[str, Sequence[str]],
    *,
    now: datetime | None = None,
) -> str | None:
    """Why ``approval`` would not count for ``subject`` under ``rule`` (``None`` if it counts).

    Lets a server refuse an approval up front (self-approval, wrong digest or target, expired,
    no approver role) with the same reasons :func:`evaluate` gives when it ignores one.
    """
    return _why_ignored(approval, subject, rule, roles, _utc(now or datetime.now(UTC)))
