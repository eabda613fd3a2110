"""Crafted malicious model files, built as bytes and never loaded.

Every payload runs ``touch <canary>`` (or names a dangerous import) if it were loaded; tests
assert the canary never appears. Each entry: file name, bytes, the import the scanner must name.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np


class Reduce:
    """An object whose pickle calls ``func(*args)`` on load (pickling it calls nothing)."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _short(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def stack_global(module: str, name: str, arg: str) -> bytes:
    """Protocol 4: ``module.name(arg)`` via STACK_GLOBAL."""
    return b"\x80\x04" + _short(module) + _short(name) + b"\x93" + _short(arg) + b"\x85R."


def memo_indirect(module: str, name: str, arg: str) -> bytes:
    """Module and name stored in the memo early, popped, fetched with BINGET much later."""
    return (
        b"\x80\x04"
        + _short(module) + b"q\x07" + b"0"        # BINPUT 7, POP
        + _short("decoy") + b"q\x08" + b"0"
        + _short(name) + b"q\x09" + b"0"          # BINPUT 9, POP
        + b"K\x01K\x02\x860"                       # unrelated work
        + b"h\x07h\x09\x93"                        # BINGET 7, BINGET 9, STACK_GLOBAL
        + _short(arg) + b"\x85R."
    )  # fmt: skip


def memoize_built(module: str, name: str, arg: str) -> bytes:
    """Names pushed with MEMOIZE (implicit memo indices) and read back via BINGET."""
    return (
        b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00"
        + _short(name) + b"\x94" + _short(module) + b"\x94"   # memo 0 = name, 1 = module
        + b"00"
        + b"h\x01h\x00\x93" + _short(arg) + b"\x85R."
    )  # fmt: skip


def qual(func: Callable[..., Any]) -> str:
    """The ``module.qualname`` pickle writes for ``func``."""
    return f"{func.__module__}.{func.__qualname__}"


def build(canary: Path) -> dict[str, tuple[bytes, str]]:
    """Return ``{file name: (bytes, offending import)}`` for the whole corpus."""
    import builtins
    import ctypes
    import importlib
    import os
    import runpy
    import subprocess

    cmd = f"touch {canary}"
    sysname = f"{os.system.__module__}.system"  # posix.system on POSIX
    out: dict[str, tuple[bytes, str]] = {}

    def dumps(obj: Any, proto: int = 4) -> bytes:
        return pickle.dumps(obj, protocol=proto)

    out["os_system_p4.pkl"] = (dumps(Reduce(os.system, cmd)), sysname)
    out["os_system_p2.pkl"] = (dumps(Reduce(os.system, cmd), 2), sysname)
    out["os_system_p5.pkl"] = (dumps(Reduce(os.system, cmd), 5), sysname)
    out["os_system_text_p0.pkl"] = (f"cos\nsystem\n(S'{cmd}'\ntR.".encode(), "os.system")
    out["posix_system_inst_p0.pkl"] = (f"(S'{cmd}'\niposix\nsystem\n.".encode(), "posix.system")
    out["popen.pkl"] = (dumps(Reduce(subprocess.Popen, ["touch", str(canary)])), "subprocess.Popen")
    out["eval.pkl"] = (dumps(Reduce(builtins.eval, "1+1")), "builtins.eval")
    out["exec.pkl"] = (dumps(Reduce(builtins.exec, "x=1")), "builtins.exec")
    out["import.pkl"] = (dumps(Reduce(builtins.__import__, "os")), "builtins.__import__")
    out["getattr.pkl"] = (
        dumps(Reduce(builtins.getattr, Reduce(builtins.__import__, "os"), "system")),
        "builtins.getattr",
    )
    out["builtin_py2_name_p0.pkl"] = (b"c__builtin__\neval\n(S'1'\ntR.", "builtins.eval")
    out["importlib.pkl"] = (
        dumps(Reduce(importlib.import_module, "os")),
        "importlib.import_module",
    )
    out["numpy_load.pkl"] = (dumps(Reduce(np.load, "evil.npy", None, True)), qual(np.load))
    out["numpy_load_named.pkl"] = (stack_global("numpy", "load", "evil.npy"), "numpy.load")
    out["joblib_load.pkl"] = (dumps(Reduce(joblib.load, "evil.joblib")), qual(joblib.load))
    out["joblib_load_named.pkl"] = (stack_global("joblib", "load", "e.joblib"), "joblib.load")
    out["ctypes.pkl"] = (dumps(Reduce(ctypes.CDLL, "libc.so.6")), "ctypes.CDLL")
    out["runpy.pkl"] = (dumps(Reduce(runpy.run_path, "evil.py")), "runpy.run_path")
    inner = dumps(Reduce(os.system, cmd))
    out["nested_pickle_loads.pkl"] = (dumps(Reduce(pickle.loads, inner)), qual(pickle.loads))
    out["torch_load.pt"] = (stack_global("torch", "load", "evil.pt"), "torch.load")
    out["memo_indirect.pkl"] = (memo_indirect("os", "system", cmd), "os.system")
    out["memoize_built.pkl"] = (
        memoize_built("subprocess", "getoutput", cmd),
        "subprocess.getoutput",
    )
    out["dotted_name.pkl"] = (
        stack_global("sklearn.base", "os.system", cmd),
        "sklearn.base.os.system",
    )
    out["ufunc_reconstruct.pkl"] = (
        b"\x80\x04" + _short("numpy._core") + _short("_ufunc_reconstruct") + b"\x93"
        + _short("os") + _short("system") + b"\x86R" + _short(cmd) + b"\x85R.",
        "numpy._core._ufunc_reconstruct",
    )  # fmt: skip
    # benign pickle followed by a malicious one (loaders that call pickle.load twice)
    out["second_pickle.pkl"] = (
        dumps({"ok": 1}) + f"cos\nsystem\n(S'{cmd}'\ntR.".encode(),
        "os.system",
    )
    # joblib: every compressor, and an object array whose nested pickle is malicious
    for comp in ("none", "zlib", "gzip", "bz2", "lzma", "xz", "lz4"):
        buf = io.BytesIO()
        payload = {"w": np.arange(5.0), "x": Reduce(os.system, cmd)}
        joblib.dump(payload, buf, compress=0 if comp == "none" else (comp, 3))
        out[f"evil_{comp}.joblib"] = (buf.getvalue(), sysname)
    buf = io.BytesIO()
    joblib.dump({"w": np.arange(4.0), "o": np.array([Reduce(os.system, cmd)], dtype=object)}, buf)
    out["object_array.joblib"] = (buf.getvalue(), sysname)
    # numpy .npy with an object array: its data is a pickle (np.load(allow_pickle=True))
    buf = io.BytesIO()
    np.save(buf, np.array([1, Reduce(os.system, cmd)], dtype=object), allow_pickle=True)
    out["object_array.npy"] = (buf.getvalue(), sysname)
    # PyTorch-style zip archive
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", dumps(Reduce(os.system, cmd), 2))
        z.writestr("archive/version", "3\n")
        z.writestr("archive/data/0", b"\x00" * 16)
    out["torch_zip.pt"] = (buf.getvalue(), sysname)
    # skops archive whose schema names os.system as a function
    buf = io.BytesIO()
    schema = (
        '{"__class__": "FunctionTransformer", "__module__": "sklearn.preprocessing", '
        '"__loader__": "ObjectNode", "content": {"__class__": "dict", "__module__": "builtins",'
        ' "__loader__": "DictNode", "content": {"func": {"__class__": "system", '
        '"__module__": "os", "__loader__": "FunctionNode"}}}, "protocol": 2}'
    )
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("schema.json", schema)
    out["evil.skops"] = (buf.getvalue(), "os.system")
    # unknown extension holding a protocol-0 payload
    out["weights.dat"] = (f"cos\nsystem\n(S'{cmd}'\ntR.".encode(), "os.system")
    return out


def malformed(canary: Path) -> dict[str, bytes]:
    """Files that are not what they claim, or cannot be parsed: each must be a finding."""
    good = pickle.dumps({"a": list(range(50))}, protocol=4)
    evil = pickle.dumps(Reduce(__import__("os").system, f"touch {canary}"), protocol=4)
    header = b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 999]}}'
    return {
        "truncated.pkl": good[: len(good) // 2],
        "truncated_after_global.pkl": evil[: len(evil) - 3],
        "garbage.pkl": b"\x80\x04\xff\xfe not a pickle",
        "ext1.pkl": b"\x80\x02\x82\x01)R.",
        "pickle_named.safetensors": evil,
        "bad_offsets.safetensors": struct.pack("<Q", len(header)) + header + b"\x00" * 8,
        "not_onnx.onnx": b"\xff\xff\xff\xff",
        "bad_zip.pt": b"PK\x03\x04" + b"\x00" * 40,
        "bad_gzip.joblib": b"\x1f\x8b\x08\x00" + b"\x00" * 30,
        "stack_global_nonstr.pkl": b"\x80\x04K\x01K\x02\x93)R.",
    }
