"""Fixtures: the crafted malicious corpus (written, never loaded) and real trained models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scan import corpus


@pytest.fixture(scope="session")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A path every payload would create if it were ever loaded."""
    return tmp_path_factory.mktemp("canary") / "PWNED"


@pytest.fixture(scope="session")
def evil_dir(tmp_path_factory: pytest.TempPathFactory, canary: Path) -> Path:
    """A directory of crafted malicious files, one per attack."""
    root = tmp_path_factory.mktemp("evil")
    for name, (data, _imp) in corpus.build(canary).items():
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="session")
def real_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real scikit-learn models saved with pickle (0-5), joblib (every compressor) and skops."""
    import pickle

    import joblib
    import numpy as np
    import skops.io as sio
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    models = {
        "pipeline": make_pipeline(
            FunctionTransformer(np.log1p), StandardScaler(), LogisticRegression(max_iter=300)
        ),
        "forest": RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0),
        "logreg": LogisticRegression(max_iter=300),
        "gboost": GradientBoostingClassifier(n_estimators=4, random_state=0),
    }
    root = tmp_path_factory.mktemp("real")
    for name, model in models.items():
        model.fit(x, y)
        for proto in (0, 2, 4, 5):
            (root / f"{name}_p{proto}.pkl").write_bytes(pickle.dumps(model, protocol=proto))
        for comp in ("none", "zlib", "gzip", "bz2", "lzma", "xz", "lz4"):
            joblib.dump(
                model, root / f"{name}_{comp}.joblib", compress=0 if comp == "none" else (comp, 3)
            )
        sio.dump(model, root / f"{name}.skops")
    np.save(root / "plain.npy", np.arange(12.0).reshape(3, 4))
    np.savez_compressed(root / "arrays.npz", a=np.arange(3), b=np.ones((2, 2)))
    return root
