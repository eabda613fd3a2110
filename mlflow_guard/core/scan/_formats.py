"""Checks for formats that hold no code: numpy ``.npy`` headers, safetensors, ONNX, skops schema.

Each returns a list of problems (empty when the file is what it claims to be). ``.npy`` headers
are parsed with :func:`ast.literal_eval` (literals only, as numpy itself does).
"""

from __future__ import annotations

import ast
import json
import re
import struct
from typing import IO, Any

NPY_MAGIC = b"\x93NUMPY"
_MAX_NPY_HEADER = 1 << 16
_MAX_ST_HEADER = 100 << 20
_MAX_SCHEMA = 64 << 20
SKOPS_LOADERS = frozenset(
    {
        "BytearrayNode",
        "BytesNode",
        "CachedNode",
        "ConstructorFromReduceNode",
        "DTypeNode",
        "DefaultDictNode",
        "DictNode",
        "FunctionNode",
        "JsonNode",
        "ListNode",
        "LossNode",
        "MaskedArrayNode",
        "MethodNode",
        "NdArrayNode",
        "ObjectNode",
        "OperatorFuncNode",
        "PartialNode",
        "QuantileForestNode",
        "RandomGeneratorNode",
        "RandomStateNode",
        "SetNode",
        "SliceNode",
        "SparseMatrixNode",
        "TreeNode",
        "TupleNode",
        "TypeNode",
    }
)


# Type strings that hold no Python objects (what ``dtype.str`` writes, plus one-letter codes).
_PLAIN_DESCR = re.compile(r"[<>|=]?[?bBhHiIlLqQpPnNefdgFDGuSUVacmM][0-9]*(\[[0-9]*[A-Za-z]+\])?")


def _descr_has_object(descr: object) -> bool:
    """True unless ``descr`` is provably object-free, read as ``numpy.lib.format`` reads it.

    An allowlist of type strings: ``'object'``, ``'(2,)O'`` or a field given as the string
    ``'aO'`` all make numpy unpickle the data.
    """
    if isinstance(descr, str):
        return _PLAIN_DESCR.fullmatch(descr) is None
    if isinstance(descr, tuple):  # (subtype, shape)
        return len(descr) != 2 or _descr_has_object(descr[0])
    if isinstance(descr, list):  # fields: (name, descr) or (name, descr, shape)
        return any(
            not (isinstance(f, tuple | list | str) and len(f) in (2, 3)) or _descr_has_object(f[1])
            for f in descr
        )
    return True  # any other literal: treat as object (fail closed)


def read_npy_header(stream: IO[bytes]) -> tuple[dict[str, Any] | None, str]:
    """Read a ``.npy`` header; return ``(header, problem)``, leaving ``stream`` at the data."""
    pre = stream.read(8)
    if len(pre) != 8 or not pre.startswith(NPY_MAGIC):
        return None, "not a valid .npy file (bad magic)"
    major = pre[6]
    if major == 1:
        raw = stream.read(2)
        hlen = struct.unpack("<H", raw)[0] if len(raw) == 2 else -1
    elif major in (2, 3):
        raw = stream.read(4)
        hlen = struct.unpack("<I", raw)[0] if len(raw) == 4 else -1
    else:
        return None, f".npy format version {major} is not supported"
    if not 0 <= hlen <= _MAX_NPY_HEADER:
        return None, ".npy header length is invalid or too large"
    text = stream.read(hlen)
    try:
        header = ast.literal_eval(text.decode("utf-8" if major == 3 else "latin1"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as e:
        return None, f".npy header is not a Python literal: {type(e).__name__}"
    if not isinstance(header, dict) or not {"descr", "fortran_order", "shape"} <= set(header):
        return None, ".npy header lacks descr/fortran_order/shape"
    return header, ""


def npy_holds_pickle(header: dict[str, Any]) -> bool:
    """True when the array's dtype has Python objects: its data is a pickle."""
    return _descr_has_object(header.get("descr"))


def check_safetensors(stream: IO[bytes], size: int) -> list[str]:
    """Validate a safetensors header: length, JSON object, dtypes, shapes and data offsets."""
    raw = stream.read(8)
    if len(raw) != 8:
        return ["file is too short to be safetensors"]
    n = struct.unpack("<Q", raw)[0]
    if n > min(_MAX_ST_HEADER, size - 8):
        return [f"safetensors header length {n} is larger than the file or the 100 MiB limit"]
    try:
        header = json.loads(stream.read(n).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        return [f"safetensors header is not JSON: {e}"]
    if not isinstance(header, dict):
        return ["safetensors header is not a JSON object"]
    data_len = size - 8 - n
    problems = []
    for name, t in header.items():
        if name == "__metadata__":
            if not isinstance(t, dict) or not all(isinstance(v, str) for v in t.values()):
                problems.append("safetensors __metadata__ must map strings to strings")
            continue
        ok = (
            isinstance(t, dict)
            and isinstance(t.get("dtype"), str)
            and isinstance(t.get("shape"), list)
            and all(type(d) is int and d >= 0 for d in t["shape"])
            and isinstance(t.get("data_offsets"), list)
            and len(t["data_offsets"]) == 2
            and all(type(o) is int for o in t["data_offsets"])
            and 0 <= t["data_offsets"][0] <= t["data_offsets"][1] <= data_len
        )
        if not ok:
            problems.append(f"safetensors entry {name!r} has an invalid dtype/shape/offsets")
    return problems


def _varint(stream: IO[bytes]) -> int | None:
    out, shift = 0, 0
    while shift < 64:
        b = stream.read(1)
        if not b:
            return None
        out |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return out
        shift += 7
    return None


def check_onnx(stream: IO[bytes], size: int) -> list[str]:
    """Walk an ONNX ``ModelProto``'s top-level protobuf fields; require ``graph`` (field 7)."""
    pos, fields = 0, set()
    while pos < size:
        start = stream.tell()
        tag = _varint(stream)
        if tag is None or tag >> 3 == 0:
            return ["not an ONNX model: invalid protobuf field tag"]
        field_no, wire = tag >> 3, tag & 7
        if wire == 0:
            if _varint(stream) is None:
                return ["not an ONNX model: truncated varint"]
        elif wire == 2:
            n = _varint(stream)
            if n is None or stream.tell() + n > size:
                return ["not an ONNX model: field length beyond the end of the file"]
            stream.seek(n, 1)
        elif wire in (1, 5):
            stream.seek(8 if wire == 1 else 4, 1)
        else:
            return [f"not an ONNX model: unsupported protobuf wire type {wire}"]
        fields.add(field_no)
        pos += stream.tell() - start
    if 7 not in fields:
        return ["not an ONNX model: no graph (ModelProto field 7)"]
    return []


def skops_types(schema: Any, out: list[tuple[str, str]], problems: list[str]) -> None:
    """Collect every (module, name) a skops ``schema.json`` would resolve, in document order."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        if "__loader__" in node:
            loader = node.get("__loader__")
            if loader not in SKOPS_LOADERS:
                problems.append(f"skops schema uses unknown loader {loader!r}")
            mod, cls = node.get("__module__"), node.get("__class__")
            if not (isinstance(mod, str) and isinstance(cls, str)):
                problems.append("skops schema node lacks __module__/__class__ strings")
            else:
                out.append((mod, cls))
            content = node.get("content")
            if loader == "MethodNode" and isinstance(content, dict):
                func, obj = content.get("func"), content.get("obj")
                if isinstance(obj, dict) and isinstance(func, str):
                    out.append((str(obj.get("__module__")), f"{obj.get('__class__')}.{func}"))
        stack.extend(reversed([v for v in node.values() if isinstance(v, dict | list)]))


def load_schema(stream: IO[bytes]) -> tuple[Any, str]:
    """Parse a skops ``schema.json`` (size-capped)."""
    data = stream.read(_MAX_SCHEMA + 1)
    if len(data) > _MAX_SCHEMA:
        return None, "skops schema.json is larger than 64 MiB"
    try:
        return json.loads(data), ""
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        return None, f"skops schema.json is not valid JSON: {e}"
