"""Allowlist rules (hard denylist wins, wildcards match classes only), policy section and CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_guard.cli import main
from mlflow_guard.core.errors import PolicyError
from mlflow_guard.core.policy.scan import ScanPolicy
from mlflow_guard.core.scan import Allowlist, scan_file
from tests.scan import corpus


def test_hard_deny_beats_any_allow_entry() -> None:
    al = Allowlist(frozenset({"os.**", "builtins.eval", "numpy.**"}))
    assert not al.allows("os", "system")
    assert not al.allows("builtins", "eval")
    assert not al.allows("numpy", "load")
    assert not al.allows("numpy.lib._npyio_impl", "load")


def test_wildcards_match_class_names_only() -> None:
    al = Allowlist.default()
    assert al.allows("sklearn.linear_model._logistic", "LogisticRegression")
    assert al.allows("sklearn.ensemble._hist_gradient_boosting.binning", "_BinMapper")
    assert not al.allows("sklearn.base", "clone")
    assert not al.allows("sklearn.base", "os.system")
    assert not al.allows("sklearn.datasets", "Bunch")


def test_extend_refuses_denied_entries_and_bad_syntax() -> None:
    with pytest.raises(PolicyError, match="hard denylist"):
        Allowlist.default().extend(["builtins.eval"])
    with pytest.raises(PolicyError, match="invalid"):
        Allowlist.default().extend(["not valid!"])
    assert Allowlist.default().extend(["mypkg.model.score"]).allows("mypkg.model", "score")


def test_policy_section_extends_the_allowlist(tmp_path: Path) -> None:
    data = corpus.stack_global("mypkg.model", "score", "x")
    (tmp_path / "m.pkl").write_bytes(data)
    assert scan_file(tmp_path / "m.pkl").imports == ["mypkg.model.score"]
    policy = ScanPolicy(allow_imports=["mypkg.model.score"])
    assert scan_file(tmp_path / "m.pkl", policy.allowlist()).safe
    with pytest.raises(ValueError, match="hard denylist"):
        ScanPolicy(allow_imports=["os.system"])


def test_cli_exit_codes_and_json(
    evil_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(evil_dir / "eval.pkl"), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    assert out["imports"] == ["builtins.eval"]
    (tmp_path / "ok.pkl").write_bytes(b"\x80\x04N.")
    assert main(["scan", str(tmp_path)]) == 0
    assert "no findings" in capsys.readouterr().out
    assert main(["scan", str(tmp_path / "missing")]) == 2


def test_core_scan_imports_no_mlflow() -> None:
    code = (
        "import sys, mlflow_guard.core.scan as s, mlflow_guard.core.policy.scan;"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('mlflow','dvc','git','numpy')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
