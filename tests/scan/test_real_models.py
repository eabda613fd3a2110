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


def _torch_state_dict_pickle() -> bytes:
    """What ``torch.save({"weight": tensor})`` writes to ``archive/data.pkl`` (protocol 2)."""
    return (
        b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01"
        b"X\x06\x00\x00\x00weightq\x02ctorch._utils\n_rebuild_tensor_v2\nq\x03("
        b"(X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x000q\x06"
        b"X\x03\x00\x00\x00cpuq\x07K\x04tq\x08Q"
        b"K\x00K\x04\x85q\tK\x01\x85q\n\x89ccollections\nOrderedDict\nq\x0b)Rq\x0ctq\rRq\x0e"
        b"s."
    )


def test_torch_state_dict_zip_is_clean(tmp_path: Path) -> None:
    import pickletools
    import zipfile

    data = _torch_state_dict_pickle()
    assert [op.name for op, _, _ in pickletools.genops(data)][-1] == "STOP"
    with zipfile.ZipFile(tmp_path / "model.pt", "w") as z:
        z.writestr("archive/data.pkl", data)
        z.writestr("archive/data/0", b"\x80\x05" + b"\x00" * 14)  # raw storage: never parsed
        z.writestr("archive/version", "3\n")
        z.writestr("archive/byteorder", "little")
    report = scan_file(tmp_path / "model.pt")
    assert report.safe, report.findings
    assert report.formats["torch-zip"] == 1
    assert report.formats["torch-storage"] == 1


def test_models_holding_cython_objects_are_clean(tmp_path: Path) -> None:
    """Losses, random states and bit generators are Cython classes: no Python source for a
    wildcard to vouch for, so they are exact allowlist entries. Without them these scan dirty."""
    import pickle
    import warnings

    import skops.io as sio
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import (
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    from sklearn.linear_model import SGDClassifier, SGDRegressor
    from sklearn.neural_network import MLPClassifier

    x, y = load_breast_cancer(return_X_y=True)
    models = [
        SGDClassifier(max_iter=5, random_state=0),
        SGDRegressor(max_iter=5, loss="huber", random_state=0),
        HistGradientBoostingClassifier(max_iter=3, random_state=0),
        HistGradientBoostingRegressor(max_iter=3, loss="poisson", random_state=0),
        GradientBoostingRegressor(n_estimators=3, loss="huber", random_state=0),
        MLPClassifier(max_iter=5, random_state=0),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: a few iterations on purpose
        for i, m in enumerate(models):
            m.fit(x, y)
            (tmp_path / f"{i}.pkl").write_bytes(pickle.dumps(m, protocol=5))
            sio.dump(m, tmp_path / f"{i}.skops")
    report = scan_directory(tmp_path)
    assert report.safe, [(f.path, f.reason) for f in report.findings]
    assert report.formats["pickle"] >= len(models)
    assert report.formats["skops"] == len(models)
