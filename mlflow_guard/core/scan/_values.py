"""Symbolic values the pickle walker keeps on its stack (no object is ever constructed)."""

from __future__ import annotations

from dataclasses import dataclass, field


class Mark:
    """The ``MARK`` sentinel."""


MARK = Mark()


class Opaque:
    """A value the walker does not model (bytes, lists, sets, results of calls)."""


OPAQUE = Opaque()


@dataclass(frozen=True)
class Global:
    """The result of ``GLOBAL``/``STACK_GLOBAL``/``INST``: an imported ``module.name``."""

    module: str
    name: str

    @property
    def qualname(self) -> str:
        """``module.name``."""
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Instance:
    """An object built by calling or instantiating ``cls``; ``state`` set by ``BUILD``."""

    cls: Global
    state: object = None


@dataclass(eq=False)
class DType:
    """A ``numpy.dtype`` built from its typestring, with ``BUILD``'s element size and flags."""

    typestr: str
    elsize: int = -1
    flags: int = 0
    fields: dict[str, object] = field(default_factory=dict)

    @property
    def hasobject(self) -> bool:
        """True when elements are Python objects (the data is a nested pickle)."""
        return self.typestr.lstrip("<>|=").startswith("O") or bool(self.flags & 1)

    def itemsize(self) -> int | None:
        """Bytes per element, or ``None`` when it cannot be derived."""
        if self.elsize > 0:
            return self.elsize
        digits = self.typestr.lstrip("<>|=")[1:]
        return int(digits) if digits.isdigit() and int(digits) > 0 else None
