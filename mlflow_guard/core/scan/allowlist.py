"""Which imports a pickle may name: the allowlist and the hard denylist.

Entry syntax (the same in code and in ``guard.yaml``):

* ``module.name`` — exactly that global (``numpy.dtype``, ``sklearn.tree._tree.Tree``);
* ``module.*`` — any *class-like* name (an upper-case letter after any leading underscores,
  no dots) defined
  directly in ``module``;
* ``package.**`` — any class-like name in ``package`` or any of its sub-modules.

A wildcard also requires the name to be *defined* in that module: bound by a ``class`` or
``def`` statement in its source (read with :mod:`ast`, never imported; see
:mod:`mlflow_guard.core.scan._origin`), not imported from elsewhere. Modules expose every name
they import (``sklearn.pipeline.Parallel`` is joblib's ``Parallel``), while pickle always writes
the defining module, so real models never need a re-export. Names without Python source
(C/Cython classes, packages not installed where the scanner runs) fail closed under a wildcard;
such classes that real models need are exact entries below.

Why wildcards match classes only: calling a class with pickled arguments builds an object, and
``BUILD`` only sets its state; calling an arbitrary *function* of a large package can read files,
download data or re-enter ``pickle`` (``numpy.load``, ``joblib.load``,
``numpy.core._ufunc_reconstruct`` resolves any ``module.name`` you give it). Functions must be
listed exactly. Dotted names (``Outer.attr``) walk attributes at load time (``sklearn.base`` +
``os.system`` resolves to ``os.system``), so they only match exact entries.

The hard denylist (:data:`HARD_DENY`) wins over every allowlist entry, including ones a policy
adds; :meth:`Allowlist.extend` refuses entries it would shadow unless ``unsafe=True``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from mlflow_guard.core.errors import PolicyError
from mlflow_guard.core.scan import _origin

#: :meth:`Allowlist.refusal` for a name no entry allows (or the denylist forbids).
NOT_ALLOWED = "not on the allowlist"

_ENTRY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*(\.\*\*?)?$")

#: Globals real scikit-learn, numpy, scipy, joblib, skops, MLflow-saved (and PyTorch state-dict)
#: pickles need. Derived by scanning models saved in ``tests/scan`` (see docs/scanner.md).
DEFAULT_ENTRIES: tuple[str, ...] = (
    # builtins and stdlib value types
    "builtins.object",
    "builtins.set",
    "builtins.frozenset",
    "builtins.slice",
    "builtins.complex",
    "builtins.bytearray",
    "builtins.bytes",
    "builtins.range",
    "builtins.list",
    "builtins.dict",
    "builtins.tuple",
    "builtins.str",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "builtins.type",
    "builtins.NoneType",
    "builtins.Ellipsis",
    "builtins.NotImplemented",
    "_codecs.encode",
    "copyreg._reconstructor",
    "copyreg.__newobj__",
    "collections.OrderedDict",
    "collections.defaultdict",
    "collections.Counter",
    "collections.deque",
    "datetime.*",
    "decimal.Decimal",
    "fractions.Fraction",
    "uuid.UUID",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "pathlib.PurePosixPath",
    "pathlib.PureWindowsPath",
    "enum.Enum",
    "re._compile",
    # numpy: arrays, dtypes, scalars, random state
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.*",
    "numpy.dtypes.*",
    "numpy.ma.core.MaskedArray",
    "numpy.ma.core._mareconstruct",
    "numpy.core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy.core.numeric._frombuffer",
    "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
    "numpy._core.numeric._frombuffer",
    "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__generator_ctor",
    "numpy.random.**",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    # Cython classes: a wildcard cannot vouch for them (no Python source), so listed exactly
    "numpy.random._generator.Generator",
    "numpy.random._mt19937.MT19937",
    "numpy.random._pcg64.PCG64",
    "numpy.random._pcg64.PCG64DXSM",
    "numpy.random._philox.Philox",
    "numpy.random._sfc64.SFC64",
    "numpy.random.bit_generator.SeedSequence",
    "numpy.random.mtrand.RandomState",
    # numpy ufuncs real pipelines pass to FunctionTransformer (referenced, not called, on load)
    *(
        f"numpy.{f}"
        for f in (
            "log",
            "log1p",
            "log2",
            "log10",
            "exp",
            "expm1",
            "sqrt",
            "cbrt",
            "square",
            "abs",
            "absolute",
            "sign",
            "negative",
            "reciprocal",
            "sin",
            "cos",
            "tanh",
            "arcsinh",
            "floor",
            "ceil",
            "rint",
            "clip",
            "maximum",
            "minimum",
            "add",
            "subtract",
            "multiply",
            "divide",
            "power",
            "mean",
            "median",
            "sum",
            "std",
            "var",
            "nanmean",
            "nanmedian",
            "isnan",
            "isfinite",
            "float64",
            "int64",
        )
    ),
    "numpy.float64",
    "numpy.float32",
    "numpy.float16",
    "numpy.int64",
    "numpy.int32",
    "numpy.int16",
    "numpy.int8",
    "numpy.uint64",
    "numpy.uint32",
    "numpy.uint16",
    "numpy.uint8",
    "numpy.bool_",
    "numpy.str_",
    "numpy.bytes_",
    "numpy.complex128",
    "numpy.complex64",
    "numpy.datetime64",
    "numpy.timedelta64",
    # scipy: sparse matrices and arrays, frozen distributions' classes
    "scipy.sparse.**",
    "scipy.stats._distn_infrastructure.rv_continuous_frozen",
    "scipy.stats._distn_infrastructure.rv_discrete_frozen",
    "scipy.stats._continuous_distns.*",
    "scipy.stats._discrete_distns.*",
    # scikit-learn estimators, transformers, losses, trees (classes only)
    "sklearn.**",
    "sklearn.tree._tree.Tree",
    "sklearn._loss.loss._compute_loss",
    "sklearn.ensemble._gb.VerboseReporter",
    "sklearn.metrics._scorer._passthrough_scorer",
    "sklearn.utils._bunch.Bunch",
    # Cython classes fitted models hold (losses); no Python source, so listed exactly
    *(
        f"sklearn._loss._loss.Cy{c}"
        for c in (
            "AbsoluteError",
            "ExponentialLoss",
            "HalfBinomialLoss",
            "HalfGammaLoss",
            "HalfMultinomialLoss",
            "HalfPoissonLoss",
            "HalfSquaredError",
            "HalfTweedieLoss",
            "HalfTweedieLossIdentity",
            "HuberLoss",
            "PinballLoss",
        )
    ),
    *(
        f"sklearn.linear_model._sgd_fast.{c}"
        for c in (
            "EpsilonInsensitive",
            "Hinge",
            "ModifiedHuber",
            "SquaredEpsilonInsensitive",
            "SquaredHinge",
        )
    ),
    # joblib containers (the array wrapper is followed by raw data the scanner skips)
    "joblib.numpy_pickle.NumpyArrayWrapper",
    # skops schema node classes (only the types skops writes into schema.json)
    "skops.io._general.*",
    "skops.io._numpy.*",
    "skops.io._scipy.*",
    "skops.io._sklearn.*",
    # PyTorch weights: the set ``torch.load(weights_only=True)`` accepts
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._tensor._rebuild_from_type_v2",
    "torch.storage.UntypedStorage",
    "torch.storage.TypedStorage",
    "torch.Size",
    "torch.device",
    "torch.float32",
    "torch.float16",
    "torch.bfloat16",
    "torch.int64",
    "torch.*",
    # legacy storage classes state dicts name; exact so a scan without torch installed passes
    *(
        f"torch.{t}Storage"
        for t in (
            "Byte",
            "Char",
            "Short",
            "Int",
            "Long",
            "Half",
            "Float",
            "Double",
            "BFloat16",
            "Bool",
            "ComplexFloat",
            "ComplexDouble",
            "QUInt8",
            "QInt8",
            "QInt32",
            "QUInt4x2",
            "QUInt2x4",
        )
    ),
    "torch.nn.parameter.Parameter",
)

#: Never allowed, whatever the allowlist says: code execution, imports, file and network
#: access, nested deserialisers, attribute walking.
HARD_DENY: tuple[str, ...] = (
    "os.**",
    "posix.**",
    "nt.**",
    "subprocess.**",
    "pty.**",
    "shutil.**",
    "socket.**",
    "sys.**",
    "builtins.eval",
    "builtins.exec",
    "builtins.compile",
    "builtins.__import__",
    "builtins.getattr",
    "builtins.setattr",
    "builtins.delattr",
    "builtins.open",
    "builtins.input",
    "builtins.breakpoint",
    "builtins.globals",
    "builtins.locals",
    "builtins.vars",
    "builtins.memoryview",
    "importlib.**",
    "runpy.**",
    "code.**",
    "codeop.**",
    "ctypes.**",
    "_ctypes.**",
    "pickle.**",
    "_pickle.**",
    "pickletools.**",
    "marshal.**",
    "dill.**",
    "cloudpickle.**",
    "types.**",
    "operator.**",
    "functools.partial",
    "webbrowser.**",
    "urllib.**",
    "http.**",
    "asyncio.**",
    "multiprocessing.**",
    "threading.**",
    "numpy.load",
    "numpy.loadtxt",
    "numpy.genfromtxt",
    "numpy.fromfile",
    "numpy.memmap",
    "numpy.save",
    "numpy.savez",
    "numpy.core._ufunc_reconstruct",
    "numpy._core._ufunc_reconstruct",
    "numpy.lib.**",
    "numpy.testing.**",
    "numpy.f2py.**",
    "numpy.distutils.**",
    "numpy.ctypeslib.**",
    "joblib.load",
    "joblib.numpy_pickle.load",
    "joblib.numpy_pickle_compat.**",
    "joblib.parallel.**",
    "torch.load",
    "torch.serialization.**",
    "torch.jit.**",
    "torch.hub.**",
    "torch.ops.**",
    "torch.classes.**",
    "sklearn.datasets.**",
    "sklearn.externals.**",
    "sklearn.utils._testing.**",
    "sklearn.utils._show_versions.**",
    "sklearn.utils.parallel.**",
    "sklearn.callback._transport.**",  # multiprocessing.connection's Listener/Client re-exported
    "skops.io.load",
    "skops.io.loads",
    "mlflow.pyfunc.**",
    "mlflow.models.**",
    "mlflow.sklearn.**",
    "mlflow.artifacts.**",
    "mlflow.tracking.**",
    "mlflow.utils.**",
)


def _valid(entry: str) -> str:
    if not _ENTRY.match(entry):
        raise PolicyError(
            f"invalid import allowlist entry {entry!r}",
            details=["expected 'module.name', 'module.*' or 'package.**'"],
            hint="fix the entry under scan.allow_imports",
        )
    return entry


def _class_like(name: str) -> bool:
    return "." not in name and name.lstrip("_")[:1].isupper()


def _wildcard(entry: str) -> bool:
    return entry.endswith((".*", ".**"))


def _matches(entry: str, module: str, name: str, *, any_name: bool) -> bool:
    if entry.endswith(".**"):
        pkg = entry[:-3]
        in_pkg = module == pkg or module.startswith(pkg + ".")
        return in_pkg and (any_name or _class_like(name))
    if entry.endswith(".*"):
        return module == entry[:-2] and (any_name or _class_like(name))
    return entry == f"{module}.{name}"


@dataclass(frozen=True)
class Allowlist:
    """A set of allowed imports, checked after the hard denylist.

    Args:
        entries: allowed globals (see the module docstring for the syntax).
        deny: denied globals on top of :data:`HARD_DENY`; deny entries' wildcards match
            every name, not only class-like ones.
    """

    entries: frozenset[str]
    deny: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def default(cls) -> Allowlist:
        """The built-in allowlist: scikit-learn, numpy, scipy, joblib, skops, torch weights."""
        return cls(frozenset(DEFAULT_ENTRIES))

    def extend(self, entries: Iterable[str], *, unsafe: bool = False) -> Allowlist:
        """Return a new allowlist with ``entries`` added.

        Raises:
            PolicyError: an entry is malformed, or names something the hard denylist forbids
                (unless ``unsafe`` — and even then the denylist still wins at scan time for
                names it matches; ``unsafe`` only silences the configuration error).
        """
        added = [_valid(e) for e in entries]
        if not unsafe:
            for e in added:
                mod, _, name = e.rpartition(".")
                if name not in ("*", "**") and self.denied(mod, name):
                    raise PolicyError(
                        f"scan.allow_imports entry {e!r} is on the hard denylist",
                        details=["it allows code execution, imports or file/network access"],
                        hint="remove it; sign and trust the model instead of allowlisting code",
                    )
        return Allowlist(self.entries | frozenset(added), self.deny)

    def denied(self, module: str, name: str) -> bool:
        """True when ``module.name`` is on the hard denylist or this list's ``deny``."""
        for entry in (*HARD_DENY, *self.deny):
            if _matches(entry, module, name, any_name=True):
                return True
        return False

    def refusal(self, module: str, name: str) -> str | None:
        """Why a pickle may not import ``module.name``; None when it may.

        Returns :data:`NOT_ALLOWED` for names on the hard denylist, on ``deny`` or on no entry.
        A name matched only by a wildcard must also be *defined* in ``module`` by a ``class`` or
        ``def`` statement (read from its source, never imported); otherwise the answer says why
        (re-exported, no Python source, ...).
        """
        if not module or not name or self.denied(module, name):
            return NOT_ALLOWED
        wild = False
        for e in self.entries:
            if _matches(e, module, name, any_name=False):
                if not _wildcard(e):
                    return None
                wild = True
        if not wild:
            return NOT_ALLOWED
        return _origin.refusal(module, name)

    def allows(self, module: str, name: str) -> bool:
        """True when ``module.name`` may be imported by a pickle (see :meth:`refusal`)."""
        return self.refusal(module, name) is None
