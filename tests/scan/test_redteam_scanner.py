"""Red-team tests: files crafted to get past the scanner while a real loader runs their code.

Each case is built twice from the same recipe: once aimed at ``canary`` and scanned (the scan must
report it, say why, and never create ``canary``), and once aimed at a separate ``live`` marker
and loaded by the real loader in a fresh interpreter, proving the bytes the scanner refuses really
run code there (a test whose payload is broken could not fail).
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from mlflow_guard.core.scan import scan_directory, scan_file


def _s(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _system_p0(marker: Path) -> bytes:
    """Protocol 0: ``os.system("touch <marker>")``."""
    return f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()


def _load(code: str, cwd: Path) -> None:
    """Run loader ``code`` in a fresh interpreter (never in the test process)."""
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, timeout=180
    )


def _prove_live(tmp_path: Path, name: str, recipe: Callable[[Path], bytes], loader: str) -> None:
    """Load ``recipe(live)`` with ``loader`` (code using ``p``) in a subprocess: it must run."""
    d = tmp_path / "live"
    d.mkdir(exist_ok=True)
    live = d / "LIVE"
    (d / name).write_bytes(recipe(live))
    _load(f"p = {str(d / name)!r}\n{loader}", d)
    assert live.exists(), "the payload does not run under the real loader: the test proves nothing"


# -- pickle parsing: the walker must never stop where a real unpickler goes on -----------------

PARSER_CASES = {
    # INT is parsed with base 0 by both unpicklers; pickletools reads base 10 and gave up, and a
    # file of unknown type that "fails to parse" before calling anything was ignored.
    "int_hex": (lambda m: b"I0x1\n0" + _system_p0(m), "import pickle; pickle.load(open(p, 'rb'))"),
    # LONG: pickle.py (joblib's unpickler) also uses base 0.
    "long_hex": (lambda m: b"L0x1L\n0" + _system_p0(m), "import joblib; joblib.load(p)"),
    # STRING: pickletools insists on ASCII; a loader with encoding='latin1' does not.
    "string_latin1": (
        lambda m: b"S'\xe9'\n0" + _system_p0(m),
        "import pickle; pickle.load(open(p, 'rb'), encoding='latin1')",
    ),
}


@pytest.mark.parametrize("case", sorted(PARSER_CASES))
def test_unknown_file_whose_first_opcode_pickletools_rejects(
    tmp_path: Path, canary: Path, case: str
) -> None:
    recipe, loader = PARSER_CASES[case]
    (tmp_path / "weights.data").write_bytes(recipe(canary))
    report = scan_file(tmp_path / "weights.data")
    assert report.imports == ["os.system"], [f.reason for f in report.findings]
    assert "imports outside the allowlist: os.system" in report.findings[0].reason
    assert not canary.exists()
    _prove_live(tmp_path, "weights.data", recipe, loader)


def test_same_under_a_pickle_name_is_reported_by_import_not_as_malformed(
    tmp_path: Path, canary: Path
) -> None:
    (tmp_path / "model.pkl").write_bytes(b"I0x1\n0" + _system_p0(canary))
    reasons = [f.reason for f in scan_file(tmp_path / "model.pkl").findings]
    assert reasons == ["imports outside the allowlist: os.system (loading this file can run code)"]
    assert not canary.exists()


def test_text_files_still_pass(tmp_path: Path) -> None:
    (tmp_path / "NOTES").write_text("I am a note\nLong line\nS no quotes\n")
    (tmp_path / "README").write_text("Int: 0x10\ncommon words\n")
    assert scan_directory(tmp_path).safe


def test_huge_byte_string_is_skipped_not_held_in_memory(tmp_path: Path) -> None:
    size = 256 << 20
    payload = b"\x80\x04\x8e" + size.to_bytes(8, "little")
    with gzip.open(tmp_path / "big.joblib", "wb", compresslevel=1) as f:
        f.write(payload)
        for _ in range(size >> 20):
            f.write(bytes(1 << 20))
        f.write(b".")
    tracemalloc.start()
    try:
        report = scan_file(tmp_path / "big.joblib")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.safe, report.findings
    assert peak < 32 << 20, f"scanning held {peak >> 20} MiB for a 256 MiB byte string"


# -- files the scanner skipped by name while a loader reads them --------------------------------


def _sklearn_model_dir(root: Path, marker: Path) -> Path:
    """An MLflow sklearn model whose MLmodel names ``model.json`` as the pickled model."""
    root.mkdir()
    (root / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: model.json\n"
        "    serialization_format: pickle\n    sklearn_version: 1.0\n"
    )
    (root / "model.json").write_bytes(_system_p0(marker))
    return root


def test_pickle_under_a_data_suffix_named_by_mlmodel(tmp_path: Path, canary: Path) -> None:
    model = _sklearn_model_dir(tmp_path / "model", canary)
    report = scan_directory(model)
    assert [f.path for f in report.findings] == ["model.json"]
    assert report.imports == ["os.system"]
    assert "imports outside the allowlist: os.system" in report.findings[0].reason
    assert not canary.exists()
    live = tmp_path / "LIVE"
    live_model = _sklearn_model_dir(tmp_path / "l", live)
    _load(f"import mlflow.sklearn; mlflow.sklearn.load_model({str(live_model)!r})", tmp_path)
    assert live.exists(), "mlflow.sklearn.load_model did not unpickle model.json"


def test_data_files_are_still_counted_as_data(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("artifact_path: model\nflavors:\n  sklearn: {}\n")
    (tmp_path / "conda.yaml").write_text("channels:\n- conda-forge\ndependencies:\n- python\n")
    (tmp_path / "input_example.json").write_text('{"columns": ["a"], "data": [[1]]}')
    (tmp_path / "requirements.txt").write_text("mlflow==3.17\nscikit-learn\n")
    report = scan_directory(tmp_path)
    assert report.safe, report.findings
    assert report.formats == {"data": 4}


# -- numpy: a dtype spelled so the scanner did not see objects ---------------------------------


def _npy(descr: str, marker: Path) -> bytes:
    """A .npy whose header declares ``descr`` and whose data is a pickle running ``touch``."""
    import struct

    header = f"{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}".encode()
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    cmd = f"touch {marker}".encode()
    data = b"\x80\x02cposix\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd + b"\x85R."
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


NPY_DESCRS = ["'object'", "'(2,)O'", "[('a', 'f8'), ['b', 'O']]", "['aO']"]


@pytest.mark.parametrize("descr", NPY_DESCRS)
def test_npy_object_dtype_by_another_name(tmp_path: Path, canary: Path, descr: str) -> None:
    (tmp_path / "a.npy").write_bytes(_npy(descr, canary))
    report = scan_file(tmp_path / "a.npy")
    assert report.imports == ["posix.system"], [f.reason for f in report.findings]
    assert not canary.exists()
    if descr == "'object'":
        loader = "import numpy; numpy.load(p, allow_pickle=True)"
        _prove_live(tmp_path, "a.npy", lambda m: _npy(descr, m), loader)


def test_npy_plain_dtypes_are_not_walked(tmp_path: Path) -> None:
    import numpy as np

    for i, a in enumerate(
        [
            np.arange(3.0),
            np.array(["x"]),
            np.zeros(2, "M8[ns]"),
            np.zeros(2, [("a", "<f8"), ("b", "<i4", (2,))]),
        ]
    ):
        np.save(tmp_path / f"{i}.npy", a)
    report = scan_directory(tmp_path)
    assert report.safe, report.findings
    assert report.formats == {"npy": 4}


# -- allowlisted names that are not what the allowlist assumes ---------------------------------


def _lazy_loader(marker: Path) -> bytes:
    """``mlflow.LazyLoader`` puts any module into ``sys.modules`` under a name of our choosing.

    BUILD looks up ``__setstate__``, which makes the loader import ``subprocess`` as
    ``sklearn.pwn``; ``sklearn.pwn.Popen`` then passes an allowlist that trusts ``sklearn.**``.
    """
    sg = _s("mlflow") + _s("LazyLoader") + b"\x93"
    popen = _s("sklearn.pwn") + _s("Popen") + b"\x93"
    return (
        b"\x80\x04" + sg + _s("sklearn.pwn") + b"}" + _s("subprocess") + b"\x87R" + b"}b0"
        + popen + b"](" + _s("touch") + _s(str(marker)) + b"e\x85R."
    )  # fmt: skip


def test_mlflow_lazy_loader_poisoning_sys_modules(tmp_path: Path, canary: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(_lazy_loader(canary))
    report = scan_file(tmp_path / "model.pkl")
    assert "mlflow.LazyLoader" in report.imports, [f.reason for f in report.findings]
    assert "imports outside the allowlist: mlflow.LazyLoader" in report.findings[0].reason
    assert not canary.exists()
    _prove_live(tmp_path, "model.pkl", _lazy_loader, "import pickle; pickle.load(open(p, 'rb'))")


def _patch_predict(via_type: bool) -> bytes:
    """BUILD with a slot state on a class sets its attributes: every later model is tampered."""
    mixin = _s("sklearn.linear_model._base") + _s("LinearClassifierMixin") + b"\x93"
    if via_type:  # builtins.type(<an instance>) returns the class to patch
        mixin = _s("builtins") + _s("type") + b"\x93" + mixin + b")\x81\x85R"
    return (
        b"\x80\x04" + mixin + b"N}" + _s("predict") + _s("numpy") + _s("sign") + b"\x93s\x86b."
    )  # fmt: skip


@pytest.mark.parametrize("via_type", [False, True])
def test_build_on_a_class_monkeypatches_it(tmp_path: Path, canary: Path, via_type: bool) -> None:
    (tmp_path / "model.pkl").write_bytes(_patch_predict(via_type))
    report = scan_file(tmp_path / "model.pkl")
    assert not report.safe
    assert any("BUILD sets attributes" in f.reason for f in report.findings), report.findings
    assert not canary.exists()
    live = tmp_path / "LIVE"
    _load(
        f"""
        import pickle, numpy as np
        from sklearn.linear_model import LogisticRegression
        pickle.load(open({str(tmp_path / "model.pkl")!r}, "rb"))
        m = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        if m.predict(np.array([[-3.0]])).tolist() == [[-1.0]]:  # sign(x), not a class label
            open({str(live)!r}, "w").close()
        """,
        tmp_path,
    )
    assert live.exists(), "loading did not tamper with LogisticRegression.predict"


def _listener(marker: Path) -> bytes:
    """``multiprocessing.connection.Listener``, re-exported as a sklearn class-like name."""
    cls = _s("sklearn.callback._transport") + _s("Listener") + b"\x93"
    return b"\x80\x04" + cls + _s(str(marker)) + _s("AF_UNIX") + b"\x86R."


def test_multiprocessing_listener_behind_a_sklearn_name(tmp_path: Path, canary: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(_listener(canary))
    report = scan_file(tmp_path / "model.pkl")
    assert report.imports == ["sklearn.callback._transport.Listener"], report.findings
    assert "imports outside the allowlist" in report.findings[0].reason
    assert not canary.exists()
    loader = """
        import os, pickle
        sock = os.path.join(os.path.dirname(p), "LIVE")
        obj = pickle.load(open(p, "rb"))  # binds a Unix socket at LIVE (removed at exit)
        if os.path.exists(sock):
            os.rename(sock, sock + ".seen")
            os.symlink(sock + ".seen", sock)
        """
    d = tmp_path / "live"
    d.mkdir()
    (d / "model.pkl").write_bytes(_listener(d / "LIVE"))
    _load(f"p = {str(d / 'model.pkl')!r}\n{textwrap.dedent(loader)}", d)
    assert (d / "LIVE.seen").exists(), "pickle.load did not bind a socket"


# -- already refused: keep it that way ---------------------------------------------------------


def test_zip_with_a_duplicate_member_name_scans_both(tmp_path: Path, canary: Path) -> None:
    import pickle
    import warnings
    import zipfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(tmp_path / "model.pt", "w") as z:
            z.writestr("archive/data.pkl", pickle.dumps({"w": 1}, protocol=2))
            z.writestr("archive/data.pkl", b"\x80\x02" + _system_p0(canary))
    report = scan_file(tmp_path / "model.pt")
    assert [f.path for f in report.findings] == ["model.pt!archive/data.pkl"]
    assert report.imports == ["os.system"]
    assert not canary.exists()


def test_deeply_nested_pickle_has_bounded_cost(tmp_path: Path) -> None:
    import time

    n = 200_000
    (tmp_path / "deep.pkl").write_bytes(b"\x80\x04" + b"(" * n + b"t" * n + b".")
    start = time.monotonic()
    report = scan_file(tmp_path / "deep.pkl")
    assert time.monotonic() - start < 5.0
    assert report.safe, report.findings


# -- wildcards: a name a module merely imports, or reaches through an attribute walk ----------


def _call(module: str, name: str, *args: str | tuple[str, str]) -> bytes:
    """Protocol 4: ``module.name(*args)``; a tuple argument is itself a global (module, name)."""
    out = b"\x80\x04" + _s(module) + _s(name) + b"\x93("
    for a in args:
        out += _s(a[0]) + _s(a[1]) + b"\x93" if isinstance(a, tuple) else _s(a)
    return out + b"tR."


#: (module, name, args, loader proof): the name is a re-export of something defined elsewhere;
#: the proof writes ``LIVE`` when ``pickle.load`` returned what the real definition builds.
REEXPORTS = {
    # sklearn.utils.parallel.Parallel (joblib's Parallel): sklearn.utils.parallel.** is denied
    "sklearn.pipeline.Parallel": (
        ("sklearn.pipeline", "Parallel", "3"),
        "import joblib; ok = isinstance(obj, joblib.Parallel) and obj.n_jobs == 3",
    ),
    # types.MethodType (types.** is denied): binds any callable to any object
    "sklearn.utils._available_if.MethodType": (
        ("sklearn.utils._available_if", "MethodType", ("builtins", "str"), "x"),
        "import types; ok = isinstance(obj, types.MethodType) and obj() == 'x'",
    ),
}


@pytest.mark.parametrize("case", sorted(REEXPORTS))
def test_reexported_name_behind_a_wildcard(tmp_path: Path, canary: Path, case: str) -> None:
    (module, name, *args), proof = REEXPORTS[case]
    (tmp_path / "model.pkl").write_bytes(_call(module, name, *args))
    report = scan_file(tmp_path / "model.pkl")
    assert [f.imports for f in report.findings] == [(case,)], report.findings
    reason = report.findings[0].reason
    assert "an allowlist wildcard matches but the named module does not define" in reason
    assert f"{case} (re-exported: bound there by an import, not defined there)" in reason
    assert not canary.exists()
    _prove_live(
        tmp_path,
        "model.pkl",
        lambda _m: _call(module, name, *args),
        f"import pickle, pathlib\nobj = pickle.load(open(p, 'rb'))\n{proof}\n"
        "if ok: pathlib.Path(p).with_name('LIVE').touch()",
    )


def _file_handler(marker: Path) -> bytes:
    """``("sklearn", "logging.FileHandler")``: protocol 4 walks ``sklearn.logging.FileHandler``,
    i.e. :class:`logging.FileHandler`, which opens (mode ``w``: truncates) any path on load.
    Split at its last dot the name read as a class-like ``FileHandler`` in a ``sklearn.logging``
    module, which ``sklearn.**`` allowed."""
    return _call("sklearn", "logging.FileHandler", str(marker), "w")


def test_dotted_name_walks_out_of_a_wildcard_package(tmp_path: Path, canary: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(_file_handler(canary))
    report = scan_file(tmp_path / "model.pkl")
    assert report.imports == ["sklearn.logging.FileHandler"], report.findings
    reasons = [f.reason for f in report.findings]
    assert reasons == [
        "imports outside the allowlist: sklearn.logging.FileHandler "
        "(loading this file can run code)"
    ]
    assert not canary.exists()
    _prove_live(tmp_path, "model.pkl", _file_handler, "import pickle; pickle.load(open(p, 'rb'))")


def test_skops_schema_naming_a_reexport(tmp_path: Path) -> None:
    import json
    import zipfile

    schema = {
        "__class__": "Parallel",
        "__module__": "sklearn.pipeline",
        "__loader__": "ObjectNode",
        "content": {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode"},
        "protocol": 2,
        "_skops_version": "0.16.0",
    }
    with zipfile.ZipFile(tmp_path / "model.skops", "w") as z:
        z.writestr("schema.json", json.dumps(schema))
    report = scan_file(tmp_path / "model.skops")
    assert [f.imports for f in report.findings] == [("sklearn.pipeline.Parallel",)], report
    assert report.findings[0].reason.startswith(
        "skops schema names types that an allowlist wildcard matches but the named module "
        "does not define: sklearn.pipeline.Parallel (re-exported"
    )
