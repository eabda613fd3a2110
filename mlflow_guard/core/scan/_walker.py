"""Walk one pickle's opcodes with :func:`pickletools.genops`, tracking what it would import.

The walker keeps a symbolic stack and memo, so module and name strings reach ``STACK_GLOBAL``
however they were pushed (directly, through ``PUT``/``GET`` or ``MEMOIZE``). Nothing is imported,
constructed or called. It also understands joblib's format, where a ``BUILD`` of a
``NumpyArrayWrapper`` is followed by raw array bytes (skipped) or, for object arrays, by a nested
pickle (walked recursively).
"""

from __future__ import annotations

import codecs
import io
import pickletools
import re
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from mlflow_guard.core.scan._values import MARK, OPAQUE, DType, Global, Instance, Mark, Opaque

_STR_OPS = {
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
}
_CONST_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"}
_OPAQUE_OPS = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "NEXT_BUFFER"}
_MAX_STR = 4096
_MAX_DICT = 4096
_JOBLIB_WRAPPER = Global("joblib.numpy_pickle", "NumpyArrayWrapper")
_SKIP_CHUNK = 1 << 20
_MAX_LINE = 64 << 20


class PickleParseError(Exception):
    """The stream is not a well-formed pickle (or uses something the walker refuses)."""


_CODE2OP = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
# Length-prefixed arguments: (bytes in the length, signed). Long ones are skipped, never held.
_SIZED = {
    "BINSTRING": (4, True),
    "SHORT_BINSTRING": (1, False),
    "BINBYTES": (4, False),
    "SHORT_BINBYTES": (1, False),
    "BINBYTES8": (8, False),
    "BYTEARRAY8": (8, False),
    "BINUNICODE": (4, False),
    "SHORT_BINUNICODE": (1, False),
    "BINUNICODE8": (8, False),
    "LONG4": (4, True),
}
_STRTOL0 = re.compile(rb"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def _int(text: bytes, base: int) -> int | None:
    try:
        return int(text, base)
    except ValueError:
        return None


def _strtol0(text: bytes) -> int | None:
    """C ``strtol(text, &end, 0)`` when it consumes the whole text (a leading 0 means octal)."""
    m = _STRTOL0.fullmatch(text)
    if m is None:
        return None
    body = m.group(2)
    base = 16 if body[:2].lower() == b"0x" else 8 if body.startswith(b"0") else 10
    return -int(body, base) if m.group(1) == b"-" else int(body, base)


def _line(stream: IO[bytes]) -> bytes:
    data = stream.readline(_MAX_LINE + 1)
    if not data.endswith(b"\n"):
        if len(data) > _MAX_LINE:
            raise PickleParseError(f"text argument longer than {_MAX_LINE >> 20} MiB")
        raise PickleParseError("pickle exhausted inside a text argument (no newline)")
    return data[:-1]


def _text_int(name: str, text: bytes) -> object:
    """INT/LONG as the unpicklers read them: value, OPAQUE when they disagree, error if both fail.

    pickle.py reads both with base 0; _pickle reads INT with C ``strtol`` base 0 (a leading 0 is
    octal) and LONG with base 10. pickletools reads base 10, so a hex INT stopped the walk there.
    """
    if name == "INT":
        if text in (b"00", b"01"):
            return text == b"01"
        py_val, c_val = _int(text, 0), _strtol0(text)
        if c_val is None:
            c_val = py_val
    else:
        text = text[:-1] if text.endswith(b"L") else text
        py_val, c_val = _int(text, 0), _int(text, 10)
    if py_val is None and c_val is None:
        raise PickleParseError(f"invalid {name} literal")
    return py_val if py_val == c_val else OPAQUE


def _skip(stream: IO[bytes], n: int) -> None:
    while n > 0:
        got = len(stream.read(min(n, _SKIP_CHUNK)))
        if got == 0:
            raise PickleParseError("pickle exhausted inside an argument")
        n -= got


def _ops(stream: IO[bytes]) -> Iterator[tuple[str, Any]]:
    """Like :func:`pickletools.genops`, but reading arguments the way the unpicklers do.

    Text arguments of INT/LONG/GLOBAL/INST/STRING are decoded as ``pickle``/``_pickle`` decode
    them (pickletools is stricter: the walk stopped where a loader went on). Byte and string
    arguments longer than the walker models are skipped in chunks, not read into memory; a text
    line may not exceed 64 MiB.
    """
    while True:
        code = stream.read(1)
        op = _CODE2OP.get(code)
        if op is None:
            raise PickleParseError("pickle exhausted before STOP" if not code else
                                   f"unknown opcode {code!r}")  # fmt: skip
        name = op.name
        arg: Any = None
        if name in _SIZED:
            width, signed = _SIZED[name]
            raw = stream.read(width)
            if len(raw) != width:
                raise PickleParseError(f"pickle exhausted inside {name}")
            n = int.from_bytes(raw, "little", signed=signed)
            if n < 0:
                raise PickleParseError(f"{name} with a negative length")
            if n > _MAX_STR:
                _skip(stream, n)
                arg = OPAQUE
            else:
                data = stream.read(n)
                if len(data) != n:
                    raise PickleParseError(f"pickle exhausted inside {name}")
                if name in ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"):
                    arg = data.decode("utf-8", "surrogatepass")
                elif name in ("BINSTRING", "SHORT_BINSTRING"):
                    arg = data.decode("latin-1")
                elif name == "LONG4":
                    arg = int.from_bytes(data, "little", signed=True)
        elif name in ("INT", "LONG"):
            arg = _text_int(name, _line(stream))
        elif name in ("GLOBAL", "INST"):
            arg = f"{_line(stream).decode()} {_line(stream).decode()}"
        elif name == "STRING":
            text = _line(stream)
            if len(text) < 2 or text[0] != text[-1] or text[:1] not in (b"'", b'"'):
                raise PickleParseError("STRING argument is not quoted")
            arg = codecs.escape_decode(text[1:-1])[0].decode("latin-1")
        elif op.arg is not None and op.arg.n == pickletools.UP_TO_NEWLINE:
            arg = op.arg.reader(io.BytesIO(_line(stream) + b"\n"))
        elif op.arg is not None:
            arg = op.arg.reader(stream)
        yield name, arg
        if name == "STOP":
            return


@dataclass
class WalkResult:
    """What one pickle stream would do when loaded.

    Attributes:
        globals: every ``module.name`` it imports, in order of first appearance.
        imports: the same as (module, name) pairs, one per distinct pair: ``("a.b", "c")`` and
            ``("a", "b.c")`` print alike but resolve differently (the latter walks attributes).
        problems: non-import reasons it is unsafe (extension codes, unresolvable names).
        calls: how many ``REDUCE``/``NEWOBJ``/``OBJ``/``INST``/``BUILD`` it performs.
        error: parse error text, or empty when the stream ended with ``STOP``.
        nested: how many nested pickles (joblib object arrays) were walked.
    """

    globals: list[str] = field(default_factory=list)
    imports: list[Global] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    calls: int = 0
    error: str = ""
    nested: int = 0

    @property
    def acted(self) -> bool:
        """True when the stream imported or called anything before it ended."""
        return bool(self.globals or self.calls or self.problems)


def _normalize(module: str, name: str) -> Global:
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return Global(module, name)


class _Walker:
    def __init__(self, stream: IO[bytes], result: WalkResult, depth: int) -> None:
        self.stream = stream
        self.res = result
        self.depth = depth
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}
        self.seen: set[Global] = set()
        self.names: set[str] = set()  # qualnames seen by this walker (not nested ones)

    # -- stack helpers -------------------------------------------------------------------------
    def pop(self) -> Any:
        if not self.stack:
            raise PickleParseError("stack underflow")
        v = self.stack.pop()
        if v is MARK:
            raise PickleParseError("unexpected MARK on the stack")
        return v

    def pop_mark(self) -> list[Any]:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] is MARK:
                items = self.stack[i + 1 :]
                del self.stack[i:]
                return items
        raise PickleParseError("no MARK on the stack")

    def top(self) -> Any:
        if not self.stack or self.stack[-1] is MARK:
            raise PickleParseError("stack underflow")
        return self.stack[-1]

    def add_global(self, module: str, name: str) -> Global:
        g = _normalize(module, name)
        if g not in self.seen:
            self.seen.add(g)
            self.res.imports.append(g)
            if g.qualname not in self.res.globals:
                self.res.globals.append(g.qualname)
        self.names.add(g.qualname)
        return g

    # -- main loop -----------------------------------------------------------------------------
    def run(self) -> None:
        for name, arg in _ops(self.stream):
            self.step(name, arg)

    def step(self, name: str, arg: Any) -> None:
        st = self.stack
        if name in _STR_OPS:
            st.append(arg if isinstance(arg, str) and len(arg) <= _MAX_STR else OPAQUE)
        elif name in _CONST_OPS:
            st.append(arg)
        elif name in _OPAQUE_OPS:
            st.append(OPAQUE)
        elif name == "NONE":
            st.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            st.append(name == "NEWTRUE")
        elif name in ("EMPTY_LIST", "EMPTY_SET"):
            st.append(OPAQUE)
        elif name == "EMPTY_TUPLE":
            st.append(())
        elif name == "EMPTY_DICT":
            st.append({})
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = [self.pop() for _ in range(n)][::-1]
            st.append(tuple(items))
        elif name == "TUPLE":
            st.append(tuple(self.pop_mark()))
        elif name in ("LIST", "FROZENSET"):
            self.pop_mark()
            st.append(OPAQUE)
        elif name == "DICT":
            items = self.pop_mark()
            st.append(self._dict_from(items, {}))
        elif name == "APPEND":
            self.pop()
            self.top()
        elif name in ("APPENDS", "ADDITEMS"):
            self.pop_mark()
            self.top()
        elif name == "SETITEM":
            v, k = self.pop(), self.pop()
            self._setitems(self.top(), [k, v])
        elif name == "SETITEMS":
            items = self.pop_mark()
            self._setitems(self.top(), items)
        elif name == "POP":
            if st and st[-1] is MARK:
                st.pop()
            else:
                self.pop()
        elif name == "DUP":
            st.append(self.top())
        elif name == "MARK":
            st.append(MARK)
        elif name == "POP_MARK":
            self.pop_mark()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise PickleParseError(f"memo key {arg} read before it was written")
            st.append(self.memo[arg])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[arg] = self.top()
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self.top()
        elif name in ("EXT1", "EXT2", "EXT4"):
            self.res.problems.append(
                f"{name} loads global #{arg} from the copyreg extension registry "
                "(cannot be resolved statically)"
            )
            st.append(OPAQUE)
        elif name == "GLOBAL":
            module, _, gname = str(arg).partition(" ")
            st.append(self.add_global(module, gname))
        elif name == "STACK_GLOBAL":
            gname, module = self.pop(), self.pop()
            if not (isinstance(module, str) and isinstance(gname, str)):
                self.res.problems.append(
                    "STACK_GLOBAL with a module or name that is not a plain string "
                    "(cannot be resolved statically)"
                )
                st.append(OPAQUE)
            else:
                st.append(self.add_global(module, gname))
        elif name == "INST":
            module, _, gname = str(arg).partition(" ")
            self.pop_mark()
            self.res.calls += 1
            st.append(Instance(self.add_global(module, gname)))
        elif name == "OBJ":
            items = self.pop_mark()
            if not items:
                raise PickleParseError("OBJ without a class")
            st.append(self._call(items[0], tuple(items[1:]), "OBJ"))
        elif name == "NEWOBJ":
            args, cls = self.pop(), self.pop()
            st.append(self._call(cls, args, "NEWOBJ"))
        elif name == "NEWOBJ_EX":
            _kw, args, cls = self.pop(), self.pop(), self.pop()
            st.append(self._call(cls, args, "NEWOBJ_EX"))
        elif name == "REDUCE":
            args, func = self.pop(), self.pop()
            st.append(self._call(func, args, "REDUCE"))
        elif name == "BUILD":
            state = self.pop()
            self._build(self.top(), state)
        elif name == "PERSID":
            st.append(OPAQUE)
        elif name == "BINPERSID":
            self.pop()
            st.append(OPAQUE)
        elif name == "READONLY_BUFFER":
            self.top()
        elif name == "STOP":
            self.pop()
        elif name in ("PROTO", "FRAME"):
            pass
        else:  # an opcode this Python knows and the walker does not: refuse
            raise PickleParseError(f"unsupported opcode {name}")

    # -- semantics -----------------------------------------------------------------------------
    def _dict_from(self, items: list[Any], target: dict[Any, Any]) -> dict[Any, Any] | Opaque:
        if len(items) % 2:
            raise PickleParseError("odd number of items for a dict")
        for i in range(0, len(items), 2):
            k = items[i]
            if isinstance(k, Mark | dict | DType | Instance) or len(target) >= _MAX_DICT:
                return OPAQUE
            try:
                target[k] = items[i + 1]
            except TypeError:
                return OPAQUE
        return target

    def _setitems(self, target: Any, items: list[Any]) -> None:
        if len(items) % 2:
            raise PickleParseError("odd number of items for SETITEMS")
        if isinstance(target, dict) and self._dict_from(items, target) is OPAQUE:
            target.clear()

    def _call(self, func: Any, args: Any, op: str) -> Any:
        self.res.calls += 1
        if not isinstance(func, Global):
            if not isinstance(func, Instance | DType):
                self.res.problems.append(
                    f"{op} calls a value that is not a named import (cannot be resolved)"
                )
            else:
                self.res.problems.append(f"{op} calls an object built by the pickle")
            return OPAQUE
        first = args[0] if isinstance(args, tuple) and args else None
        if func.qualname == "numpy.dtype" and isinstance(first, str):
            return DType(first)
        if func.qualname in ("copyreg._reconstructor", "copyreg.__newobj__") and isinstance(
            first, Global
        ):
            return Instance(first)
        return Instance(func)

    def _build(self, target: Any, state: Any) -> None:
        self.res.calls += 1
        if isinstance(target, Global) or (
            isinstance(target, Instance) and target.cls.qualname == "builtins.type"
        ):
            self.res.problems.append(
                "BUILD sets attributes on an imported class or function itself "
                "(it would be monkeypatched for every later load in the process)"
            )
            return
        if isinstance(target, DType):
            if isinstance(state, tuple) and len(state) >= 8:
                if isinstance(state[5], int):
                    target.elsize = state[5]
                if isinstance(state[7], int):
                    target.flags = state[7]
            return
        if isinstance(target, Instance):
            target.state = state
            if target.cls.qualname == _JOBLIB_WRAPPER.qualname:  # or ("joblib", "numpy_pickle.X")
                self._joblib_array(target)
            return
        if _JOBLIB_WRAPPER.qualname in self.names:
            raise PickleParseError(
                "BUILD on an untracked object in a stream that uses joblib's NumpyArrayWrapper "
                "(the position of the array data cannot be determined)"
            )

    def _joblib_array(self, wrapper: Instance) -> None:
        st = wrapper.state
        if not isinstance(st, dict):
            raise PickleParseError("joblib NumpyArrayWrapper state is not a plain dict")
        shape, dtype = st.get("shape"), st.get("dtype")
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise PickleParseError("joblib array shape is not a tuple of integers")
        if not isinstance(dtype, DType):
            raise PickleParseError("joblib array dtype cannot be determined")
        count = 1
        for n in shape:
            count *= n
        if dtype.hasobject:
            self.res.nested += 1
            if self.depth >= 8:
                raise PickleParseError("joblib object arrays nested more than 8 levels deep")
            _Walker(self.stream, self.res, self.depth + 1).run()
            return
        itemsize = dtype.itemsize()
        if itemsize is None:
            raise PickleParseError(f"joblib array dtype {dtype.typestr!r} has unknown item size")
        if st.get("numpy_array_alignment_bytes") is not None:
            pad = self.stream.read(1)
            if len(pad) != 1:
                raise PickleParseError("truncated joblib array padding")
            self._skip(pad[0])
        self._skip(count * itemsize)

    def _skip(self, n: int) -> None:
        while n > 0:
            got = len(self.stream.read(min(n, _SKIP_CHUNK)))
            if got == 0:
                raise PickleParseError("truncated joblib array data")
            n -= got


def walk(stream: IO[bytes]) -> WalkResult:
    """Walk one pickle from ``stream``'s current position up to and including ``STOP``.

    Never raises for bad content: a parse error is returned in :attr:`WalkResult.error`, with
    everything seen before it.
    """
    res = WalkResult()
    try:
        _Walker(stream, res, 0).run()
    except PickleParseError as e:
        res.error = str(e)
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError, MemoryError) as e:
        res.error = f"{type(e).__name__}: {e}"
    return res
