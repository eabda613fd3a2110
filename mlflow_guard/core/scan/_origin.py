"""Is a name *defined* in a module, or only re-exported there? Read from source, never imported.

An allowlist wildcard (``sklearn.**``) trusts what a package defines, but a module also exposes
every name it imports: ``sklearn.pipeline.Parallel`` is joblib's ``Parallel`` (a name the hard
denylist refuses under ``sklearn.utils.parallel``). Pickle records the *defining* module of a
class or function (``obj.__module__`` with ``obj.__qualname__``, checked by
``getattr(module, qualname) is obj`` when dumping), so a real model pickle never needs a
re-export. :func:`refusal` answers, for a module and a top-level name, whether the module's source
binds that name only by ``class`` or ``def`` statements.

Module source is located without importing anything: :func:`importlib.util.find_spec` on the
top-level package only (for a dotted name it would import the parent packages, running their
``__init__``), then :class:`importlib.machinery.PathFinder` on each parent's
``submodule_search_locations``. What has no Python source file (C extensions, compiled-only or
zipped modules, namespace packages, missing packages) is refused: fail closed. Results are
cached per module and per source file (keyed by its size and mtime, so an upgrade is seen).

Simple aliases (``Name = OtherClass``) are refused too: pickle writes the statement's own name
(``__qualname__``), so no genuine pickle names an alias, and accepting assignments would mean
judging arbitrary right-hand sides.
"""

from __future__ import annotations

import ast
import functools
import importlib.machinery
import importlib.util
import os
from dataclasses import dataclass

_DEFS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True)
class _Bindings:
    """How each module-scope name is bound in one source file."""

    defs: frozenset[str]
    """Names bound by a ``class``/``def`` statement (possibly also otherwise: see ``other``)."""
    last_def_line: dict[str, int]
    """For names with an unconditional top-level ``class``/``def``: the last such line."""
    imports: frozenset[str]
    other: frozenset[str]
    """Names bound at module scope by anything but ``class``/``def``/``import`` (assignment,
    loop or ``with`` target, ``except ... as``, ``global`` in a function, ``del``, ...)."""
    star_lines: tuple[int, ...]
    """Line numbers of ``from m import *`` at module scope (they may rebind any name)."""


def _names_in(node: ast.AST, into: set[str]) -> None:
    """Names an expression (or pattern) binds or deletes; over-approximates on purpose."""
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            into.add(n.id)
        elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
            into.add(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest:
            into.add(n.rest)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            into.add(n.name)


def _bindings(tree: ast.Module, *, has_global: bool = True) -> _Bindings:
    defs: set[str] = set()
    last: dict[str, int] = {}
    imports: set[str] = set()
    other: set[str] = set()
    stars: list[int] = []

    def block(stmts: list[ast.stmt], top: bool) -> None:
        for s in stmts:
            if isinstance(s, _DEFS):
                defs.add(s.name)
                if top:
                    last[s.name] = s.lineno
                # decorators, bases, defaults run at module scope (a walrus there binds)
                head: list[ast.AST] = list(s.decorator_list)
                if isinstance(s, ast.ClassDef):
                    head += [*s.bases, *s.keywords]
                else:
                    head += [*s.args.defaults, *(d for d in s.args.kw_defaults if d)]
                for h in head:
                    _names_in(h, other)
            elif isinstance(s, ast.Import):
                imports.update(a.asname or a.name.split(".")[0] for a in s.names)
            elif isinstance(s, ast.ImportFrom):
                for a in s.names:
                    if a.name == "*":
                        stars.append(s.lineno)
                    else:
                        imports.add(a.asname or a.name)
            else:
                for child in ast.iter_child_nodes(s):
                    nested(child)

    def nested(node: ast.AST) -> None:
        if isinstance(node, ast.stmt):
            block([node], top=False)
        elif isinstance(node, (ast.ExceptHandler, ast.match_case)):
            if isinstance(node, ast.ExceptHandler) and node.name:
                other.add(node.name)
            if isinstance(node, ast.match_case):
                _names_in(node.pattern, other)
                if node.guard is not None:
                    _names_in(node.guard, other)
            block(node.body, top=False)
        else:
            _names_in(node, other)

    block(tree.body, top=True)
    if has_global:  # a function or class body may rebind a module global
        for n in ast.walk(tree):
            if isinstance(n, ast.Global):
                other.update(n.names)
    return _Bindings(frozenset(defs), last, frozenset(imports), frozenset(other), tuple(stars))


@functools.lru_cache(maxsize=4096)
def _locate(module: str) -> tuple[str | None, str]:
    """The source file of ``module`` (or None and why not), found without importing anything."""
    parts = module.split(".")
    if not all(p.isidentifier() for p in parts):
        return None, "not a valid module name"
    try:
        # top level only: find_spec("a.b") would import (run) package "a" to read its __path__
        spec = importlib.util.find_spec(parts[0])
        for i in range(1, len(parts)):
            locations = spec.submodule_search_locations if spec is not None else None
            if locations is None:
                return None, f"{'.'.join(parts[:i])} is not an installed package"
            spec = importlib.machinery.PathFinder.find_spec(
                ".".join(parts[: i + 1]), list(locations)
            )
    except (ImportError, ValueError, AttributeError, OSError) as e:
        return None, f"cannot locate its source ({type(e).__name__}: {e})"
    if spec is None:
        return None, "module not installed where the scanner runs"
    origin = spec.origin
    if (
        not isinstance(spec.loader, importlib.machinery.SourceFileLoader)
        or not origin
        or not origin.endswith(".py")
    ):
        return None, "no Python source (a C extension, compiled or namespace module)"
    return origin, ""


@functools.lru_cache(maxsize=1024)
def _parse(path: str, size: int, mtime_ns: int) -> _Bindings | str:
    del size, mtime_ns  # cache key only: a changed file is parsed again
    try:
        with open(path, "rb") as f:
            data = f.read()
        tree = ast.parse(data, filename=path)
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError) as e:
        return f"cannot parse its source ({type(e).__name__})"
    # walking every function body for 'global' costs more than the parse: skip when absent
    return _bindings(tree, has_global=b"global" in data)


def refusal(module: str, name: str) -> str | None:
    """Why ``module.name`` is not a class or function defined in ``module`` (None when it is).

    ``name`` must be a top-level name (no dots). The answer is read from the module's source;
    nothing is imported or run.
    """
    path, why = _locate(module)
    if path is None:
        return why
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot read its source ({type(e).__name__})"
    b = _parse(path, st.st_size, st.st_mtime_ns)
    if isinstance(b, str):
        return b
    if name in b.imports:
        return "re-exported: bound there by an import, not defined there"
    if name in b.other:
        return "bound there by an assignment or other statement, not only by class/def"
    if name not in b.defs:
        if b.star_lines:
            return "not defined there (may come from a 'from ... import *')"
        return "not defined there by a class or def statement"
    if b.star_lines and max(b.star_lines) > b.last_def_line.get(name, 0):
        return "may be rebound by a 'from ... import *' after its definition"
    return None
