"""A wildcard allows a name only where a class or def statement defines it (read statically)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlflow_guard.core.scan import Allowlist, _origin

_ids = itertools.count()


def _package(root: Path, files: dict[str, str]) -> str:
    """A fresh package under ``root`` (on ``sys.path``); its ``__init__`` leaves a marker if run."""
    name = f"wildpkg{next(_ids)}"
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"open({str(root / (name + '.RAN'))!r}, 'w').close()\n")
    for rel, text in files.items():
        (pkg / rel).write_text(textwrap.dedent(text))
    return name


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


SOURCE = """
    import json
    from collections import OrderedDict
    from collections import Counter as Tally
    try:
        from _json import Scanner
    except ImportError:
        class Scanner: ...

    class Plain: ...

    @decorate
    class Decorated: ...

    if VERSION > 1:
        class Conditional: ...
    else:
        def Conditional(): ...

    def Factory(): ...

    Alias = Plain
    class Rebound: ...
    Rebound = json.loads

    class Globbed: ...
    def helper():
        global Globbed
        Globbed = json.loads

    class Deleted: ...
    del Deleted

    for Looped in (1,):
        pass
    with open(__file__) as Opened:
        pass
    class Walrus(base := object): ...
    """


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Plain", None),
        ("Decorated", None),
        ("Conditional", None),
        ("Factory", None),
        ("OrderedDict", "re-exported"),
        ("Tally", "re-exported"),
        ("json", "re-exported"),
        ("Scanner", "re-exported"),
        ("Alias", "bound there by an assignment"),
        ("Rebound", "bound there by an assignment"),
        ("Globbed", "bound there by an assignment"),
        ("Deleted", "bound there by an assignment"),
        ("Looped", "bound there by an assignment"),
        ("Opened", "bound there by an assignment"),
        ("Missing", "not defined there by a class or def"),
    ],
)
def test_bindings(site: Path, name: str, why: str | None) -> None:
    pkg = _package(site, {"mod.py": SOURCE})
    got = _origin.refusal(f"{pkg}.mod", name)
    assert got is None if why is None else (got or "").startswith(why), got
    assert not (site / f"{pkg}.RAN").exists(), "the package's __init__ ran"


def test_walrus_in_a_class_header_binds_at_module_scope(site: Path) -> None:
    pkg = _package(site, {"mod.py": "class Walrus(Base := object): ...\nclass Base: ...\n"})
    assert _origin.refusal(f"{pkg}.mod", "Walrus") is None
    assert (_origin.refusal(f"{pkg}.mod", "Base") or "").startswith("bound there by an assign")


def test_star_import_after_the_definition_may_rebind(site: Path) -> None:
    pkg = _package(
        site,
        {
            "before.py": "from json import *\nclass JSONDecoder: ...\n",
            "after.py": "class JSONDecoder: ...\nfrom json import *\n",
            "only.py": "from json import *\n",
        },
    )
    assert _origin.refusal(f"{pkg}.before", "JSONDecoder") is None
    assert "import *" in (_origin.refusal(f"{pkg}.after", "JSONDecoder") or "")
    assert "import *" in (_origin.refusal(f"{pkg}.only", "JSONDecoder") or "")


@pytest.mark.parametrize(
    ("module", "name", "why"),
    [
        ("sklearn.linear_model._logistic", "LogisticRegression", None),
        ("sklearn.pipeline", "Pipeline", None),
        ("sklearn.pipeline", "Parallel", "re-exported"),
        ("sklearn.tree._tree", "Tree", "no Python source"),  # a C extension
        ("sklearn.no_such_module", "Thing", "module not installed"),
        ("no_such_package_xyz", "Thing", "module not installed"),
        ("sklearn.pipeline.Pipeline", "fit", "sklearn.pipeline is not an installed package"),
        ("sklearn", "__version__", "bound there by an assignment"),
    ],
)
def test_real_modules(module: str, name: str, why: str | None) -> None:
    got = _origin.refusal(module, name)
    assert got is None if why is None else (got or "").startswith(why), got


def test_source_change_is_seen(site: Path) -> None:
    pkg = _package(site, {"mod.py": "class Model: ...\n"})
    assert _origin.refusal(f"{pkg}.mod", "Model") is None
    (site / pkg / "mod.py").write_text("from subprocess import Popen as Model\n")
    assert (_origin.refusal(f"{pkg}.mod", "Model") or "").startswith("re-exported")


def test_unparsable_source_fails_closed(site: Path) -> None:
    pkg = _package(site, {"mod.py": "class Model(:\n"})
    assert (_origin.refusal(f"{pkg}.mod", "Model") or "").startswith("cannot parse its source")


def test_policy_wildcard_and_exact_entries(site: Path) -> None:
    pkg = _package(site, {"feats.py": "from subprocess import Popen\nclass Scaler: ...\n"})
    al = Allowlist.default().extend([f"{pkg}.feats.*"])
    assert al.allows(f"{pkg}.feats", "Scaler")
    assert not al.allows(f"{pkg}.feats", "Popen")
    assert al.refusal(f"{pkg}.feats", "Popen") == (
        "re-exported: bound there by an import, not defined there"
    )
    # an exact entry is the reviewer's word: no source needed (C extensions), no origin check
    assert Allowlist.default().allows("sklearn.tree._tree", "Tree")
    assert Allowlist.default().extend([f"{pkg}.feats.Popen"]).allows(f"{pkg}.feats", "Popen")


def test_resolution_imports_nothing() -> None:
    """``importlib.util.find_spec("a.b")`` would import (run) ``a``; the scanner must not."""
    code = """
        import importlib.util, sys
        from mlflow_guard.core.scan import Allowlist
        al = Allowlist.default()
        assert al.allows("sklearn.linear_model._logistic", "LogisticRegression")
        assert not al.allows("sklearn.pipeline", "Parallel")
        assert al.allows("scipy.sparse._csr", "_csr_base") is False  # not class-like
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "joblib"))
        assert not leaked, leaked
        importlib.util.find_spec("sklearn.pipeline")
        assert "sklearn" in sys.modules  # what the plain call would have done
        """
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=120)
