"""Breast-cancer data (bundled with scikit-learn, no download) split into members and holdout."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="session")
def split() -> tuple[Any, Any, Any, Any]:
    """``(x_train, y_train, x_holdout, y_holdout)``, half and half, stratified."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    xt, xe, yt, ye = train_test_split(x, y, test_size=0.5, random_state=0, stratify=y)
    return np.asarray(xt), yt, np.asarray(xe), ye


@pytest.fixture(scope="session")
def logreg(split: tuple[Any, Any, Any, Any]) -> Any:
    """A regularised logistic regression behind a StandardScaler (affine as a whole)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xt, yt, _, _ = split
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=1000)).fit(xt, yt)


@pytest.fixture(scope="session")
def forest(split: tuple[Any, Any, Any, Any]) -> Any:
    """An overfit random forest: no bootstrap, fully grown trees (memorises its members)."""
    from sklearn.ensemble import RandomForestClassifier

    xt, yt, _, _ = split
    return RandomForestClassifier(n_estimators=30, bootstrap=False, random_state=0).fit(xt, yt)
