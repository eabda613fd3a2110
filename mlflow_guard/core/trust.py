"""The trust store: which public keys are trusted, for what, until when.

Built from the policy (``keys`` with purposes and ``not_after``, plus the ``revoked`` list) or,
for ad-hoc verification, from one public key given on the command line. A key trusted for one
purpose is not trusted for another; a revoked key verifies nothing; an expired key verifies
nothing after its ``not_after``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow_guard.core import keys
from mlflow_guard.core.errors import KeyNotTrusted
from mlflow_guard.core.policy import Policy, Purpose


@dataclass(frozen=True)
class TrustedKey:
    """A public key the trust store knows, with its purposes and validity."""

    name: str
    public_key: keys.PublicKey
    purposes: frozenset[Purpose]
    not_after: datetime | None = None

    @property
    def key_id(self) -> str:
        """Hex sha256 of the SubjectPublicKeyInfo DER."""
        return keys.key_id(self.public_key)

    @property
    def hint(self) -> str:
        """The OMS bundle hint (hex sha256 of the SubjectPublicKeyInfo PEM)."""
        return keys.oms_hint(self.public_key)

    @property
    def verifier(self) -> keys.Verifier:
        """A verifier for this key."""
        return keys.Verifier(self.public_key)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class TrustStore:
    """Resolves a key reference (key id or OMS hint) to a trusted key for one purpose."""

    def __init__(self, entries: Iterable[TrustedKey], revoked: Iterable[str] = ()) -> None:
        self._entries = list(entries)
        self._revoked = {r.strip().lower() for r in revoked}
        # Revocation follows the key material: revoking one policy id revokes the same public
        # key listed under any other id too.
        self._revoked_keys = {
            e.key_id
            for e in self._entries
            if e.name.lower() in self._revoked or e.key_id in self._revoked
        }
        self._by_ref: dict[str, list[TrustedKey]] = {}
        for e in self._entries:
            self._by_ref.setdefault(e.key_id, []).append(e)
            self._by_ref.setdefault(e.hint, []).append(e)

    @classmethod
    def from_policy(cls, policy: Policy) -> TrustStore:
        """Build the trust store from a loaded policy (reads every public key file)."""
        entries = [
            TrustedKey(
                name=k.id,
                public_key=keys.load_public_key(policy.key_path(k)),
                purposes=frozenset(k.purposes),
                not_after=_aware(k.not_after) if k.not_after else None,
            )
            for k in policy.keys
        ]
        return cls(entries, policy.revoked)

    @classmethod
    def single(
        cls, public_key: keys.PublicKey, purposes: Iterable[Purpose] = tuple(Purpose)
    ) -> TrustStore:
        """A store trusting exactly one key (``--public-key``), for the given purposes."""
        return cls([TrustedKey("public-key", public_key, frozenset(purposes))])

    @property
    def entries(self) -> list[TrustedKey]:
        """Every key in the store, revoked ones included."""
        return list(self._entries)

    def is_revoked(self, entry: TrustedKey) -> bool:
        """Whether the key is revoked (its key id, or any policy id it is listed under)."""
        return (
            entry.key_id in self._revoked_keys
            or entry.name.lower() in self._revoked
            or entry.key_id in self._revoked
        )

    def check(self, entry: TrustedKey, purpose: Purpose, at: datetime | None = None) -> TrustedKey:
        """Return ``entry`` if it may verify ``purpose`` at ``at``; raise otherwise.

        Raises:
            KeyNotTrusted: revoked, expired, or not trusted for ``purpose``.
        """
        now = _aware(at) if at else datetime.now(UTC)
        if self.is_revoked(entry):
            raise KeyNotTrusted(
                f"key {entry.name} ({entry.key_id[:16]}…) is revoked",
                hint="re-sign with a key that is trusted and not revoked",
            )
        if entry.not_after is not None and now > entry.not_after:
            raise KeyNotTrusted(
                f"key {entry.name} ({entry.key_id[:16]}…) expired at {entry.not_after.isoformat()}",
                hint="re-sign with a current key, or extend not_after in the policy on purpose",
            )
        if purpose not in entry.purposes:
            allowed = ", ".join(sorted(p.value for p in entry.purposes))
            raise KeyNotTrusted(
                f"key {entry.name} is trusted for [{allowed}], not for '{purpose.value}'",
                hint=f"sign with a key whose policy entry lists purpose '{purpose.value}'",
            )
        return entry

    def resolve(self, ref: str, purpose: Purpose, at: datetime | None = None) -> TrustedKey:
        """Find the key named by ``ref`` (key id or OMS hint) and check it for ``purpose``.

        Raises:
            KeyNotTrusted: unknown key, revoked, expired, or wrong purpose.
        """
        entries = self._by_ref.get(ref.strip().lower(), [])
        if not entries:
            raise KeyNotTrusted(
                f"signing key {ref[:16]}… is not in the trust store",
                hint="add its public key to the policy's 'keys' with the right purpose, "
                "or verify with --public-key",
            )
        first: KeyNotTrusted | None = None
        for entry in entries:  # the same key may be listed under several ids
            try:
                return self.check(entry, purpose, at)
            except KeyNotTrusted as e:
                first = first or e
        assert first is not None
        raise first

    def candidates(self, purpose: Purpose, at: datetime | None = None) -> list[TrustedKey]:
        """Every key currently usable for ``purpose`` (for signatures that carry no key hint)."""
        out = []
        for e in self._entries:
            try:
                out.append(self.check(e, purpose, at))
            except KeyNotTrusted:
                continue
        return out
