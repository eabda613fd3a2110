"""Decisions are values: allowed or not, which rule decided, and why.

A :class:`Decision` deliberately has no truth value: ``if decision:`` raises, so a caller must
read :attr:`Decision.allowed` and cannot mistake a denial object for "true".
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Decision:
    """Outcome of one authorization or gate check.

    Attributes:
        allowed: whether the action may proceed.
        rule: short name of the rule that decided (``access:data-scientist#0``, ``admin``,
            ``no-matching-rule``); audit entries and error messages quote it.
        reasons: human-readable lines saying why, ending with what to change when denied.
    """

    allowed: bool
    rule: str
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        raise TypeError("a Decision has no truth value; read .allowed")

    @classmethod
    def allow(cls, rule: str, *reasons: str) -> Decision:
        """An allowing decision."""
        return cls(True, rule, tuple(reasons))

    @classmethod
    def deny(cls, rule: str, *reasons: str) -> Decision:
        """A denying decision; ``reasons`` should say what is missing and how to fix it."""
        return cls(False, rule, tuple(reasons))

    @staticmethod
    def all_of(decisions: list[Decision]) -> Decision:
        """Allowed only if every decision allows; an empty list denies (fail closed)."""
        if not decisions:
            return Decision.deny("empty", "no decision was made (nothing to authorize); denied")
        for d in decisions:
            if not d.allowed:
                return d
        rules = ",".join(sorted({d.rule for d in decisions}))
        reasons = tuple(r for d in decisions for r in d.reasons)
        return Decision(True, rules, reasons)
