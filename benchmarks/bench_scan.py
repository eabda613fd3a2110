"""Scanner throughput on a real ~100 MB scikit-learn model vs bare ``pickletools.genops``.

Prints a markdown table (MB/s and ratio against the baseline, measured in one run) and, as a
second table, how many files of the crafted malicious corpus (``tests/scan/corpus.py``) our
scanner and picklescan (if installed) flag. Usage: ``python benchmarks/bench_scan.py [MB]``.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier

from mlflow_guard.core.scan import scan_file
from tests.scan import corpus


def _model(target_mb: float) -> RandomForestClassifier:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 20))
    y = (x[:, 0] + rng.normal(size=20_000) > 0).astype(int)  # noisy: deep trees
    probe = RandomForestClassifier(n_estimators=2, random_state=0, n_jobs=2).fit(x, y)
    per_tree = len(pickle.dumps(probe, protocol=4)) / 2 / 1e6
    n = max(2, int(target_mb / per_tree))
    return RandomForestClassifier(n_estimators=n, random_state=0, n_jobs=2).fit(x, y)


def _best(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _genops(path: Path) -> None:
    with path.open("rb") as f:
        for _ in pickletools.genops(f):
            pass


def main() -> None:
    target_mb = float(sys.argv[1]) if len(sys.argv) > 1 else 100.0
    model = _model(target_mb)
    tmp = Path(tempfile.mkdtemp())
    raw = tmp / "model.pkl"
    raw.write_bytes(pickle.dumps(model, protocol=4))
    jl = tmp / "model.joblib"
    joblib.dump(model, jl)
    jz = tmp / "model_zlib.joblib"
    joblib.dump(model, jz, compress=("zlib", 3))
    size = raw.stat().st_size / 1e6
    rows = []
    base = _best(lambda: _genops(raw))
    rows.append(("`pickletools.genops` bare iteration (baseline)", raw, base))
    rep = scan_file(raw)
    assert rep.safe, rep.findings
    rows.append(("mlflow-guard `scan_file`, pickle protocol 4", raw, _best(lambda: scan_file(raw))))
    rows.append(
        ("mlflow-guard `scan_file`, joblib (arrays skipped)", jl, _best(lambda: scan_file(jl)))
    )
    rows.append(("mlflow-guard `scan_file`, joblib zlib-3", jz, _best(lambda: scan_file(jz))))
    try:
        from picklescan.scanner import scan_file_path

        rows.append(
            (
                "picklescan 1.0.5 `scan_file_path`, pickle",
                raw,
                _best(lambda: scan_file_path(str(raw))),
            )
        )
    except ImportError:
        pass
    print(
        f"Model: RandomForestClassifier({model.n_estimators} trees), pickle {size:.1f} MB; "
        f"{os.cpu_count()} CPUs, machine shared with other agents (best of 3).\n"
    )
    print("| scanner | file MB | seconds | model MB/s (uncompressed) | time vs genops |")
    print("|---|---:|---:|---:|---:|")
    for name, path, secs in rows:
        mb = path.stat().st_size / 1e6
        print(f"| {name} | {mb:.1f} | {secs:.3f} | {size / secs:.0f} | {secs / base:.2f}× |")
    _corpus_table(tmp)


def _corpus_table(tmp: Path) -> None:
    canary = tmp / "PWNED"
    files = corpus.build(canary)
    ours = theirs = 0
    missed: list[str] = []
    try:
        from picklescan.scanner import SafetyLevel, scan_file_path
    except ImportError:
        scan_file_path = None  # type: ignore[assignment]
    for name, (data, _imp) in files.items():
        p = tmp / name
        p.write_bytes(data)
        ours += not scan_file(p).safe
        if scan_file_path is not None:
            res = scan_file_path(str(p))
            bad = (
                res.issues_count > 0
                or res.scan_err
                or any(g.safety == SafetyLevel.Dangerous for g in res.globals)
            )
            theirs += bool(bad)
            if not bad:
                missed.append(name)
    assert not canary.exists()
    print(f"\nCrafted malicious corpus ({len(files)} files, never loaded):\n")
    print("| scanner | flagged | missed |")
    print("|---|---:|---|")
    print(f"| mlflow-guard | {ours}/{len(files)} | {len(files) - ours} |")
    if scan_file_path is not None:
        names = ", ".join(missed) or "-"
        print(f"| picklescan 1.0.5 (default settings) | {theirs}/{len(files)} | {names} |")


if __name__ == "__main__":
    main()
