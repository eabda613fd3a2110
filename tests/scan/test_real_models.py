"""Real scikit-learn, joblib, skops, numpy, safetensors and MLflow models: no finding."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from mlflow_guard.core.scan import scan_directory, scan_file


def test_real_models_are_clean(real_models: Path) -> None:
    report = scan_directory(real_models)
    assert report.safe, [(f.path, f.reason) for f in report.findings]
    assert report.files_scanned == len(list(real_models.iterdir()))
    for fmt in ("pickle", "zlib", "gzip", "bz2", "lzma", "xz", "lz4", "skops", "npy"):
        assert report.formats.get(fmt, 0) > 0, (fmt, report.formats)


def test_safetensors_is_recognised(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (tmp_path / "m.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    report = scan_file(tmp_path / "m.safetensors")
    assert report.safe
    assert report.formats == {"safetensors": 1}


def test_onnx_is_recognised(tmp_path: Path) -> None:
    graph = b"\x0a\x01n"  # GraphProto with one node name byte string
    model = b"\x08\x08" + b"\x12\x04test" + b"\x3a" + bytes([len(graph)]) + graph
    (tmp_path / "m.onnx").write_bytes(model)
    report = scan_file(tmp_path / "m.onnx")
    assert report.safe, report.findings
    (tmp_path / "g.onnx").write_bytes(b"\x08\x08\x12\x04test")  # no graph
    assert not scan_file(tmp_path / "g.onnx").safe


def test_mlflow_sklearn_model_dir_is_clean(tmp_path: Path) -> None:
    import mlflow.sklearn
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    x, y = load_breast_cancer(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(x, y)
    for fmt in ("pickle", "cloudpickle"):
        mlflow.sklearn.save_model(
            model, tmp_path / fmt, serialization_format=fmt, pip_requirements=["scikit-learn"]
        )
        report = scan_directory(tmp_path / fmt)
        assert report.safe, [(f.path, f.reason) for f in report.findings]
        assert report.formats.get("pickle") == 1
