"""Linear CKA (covariance form) vs a direct N×N computation, the linear probe, and metrics vs scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.preprocessing import StandardScaler

from edgebridge.bridge.select import linear_cka, probe_score, select_positions, stratified_folds
from edgebridge.metrics import classification_metrics


def cka_gram(x: np.ndarray, y: np.ndarray) -> float:
    """Independent reference: HSIC with N×N Gram matrices and the centring matrix H."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    kx, ky = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float(np.sum(kx * ky) / np.sqrt(np.sum(kx * kx) * np.sum(ky * ky)))


def test_covariance_cka_equals_gram_cka() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 7))
    y = x @ rng.standard_normal((7, 11)) + 0.5 * rng.standard_normal((60, 11))
    assert linear_cka(x, y) == pytest.approx(cka_gram(x, y), rel=1e-10)
    z = rng.standard_normal((60, 3))
    assert linear_cka(x, z) == pytest.approx(cka_gram(x, z), rel=1e-10)


def test_cka_invariances() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 6))
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert linear_cka(x, x @ q * 3.0 + 2.0) == pytest.approx(1.0, abs=1e-10)


def test_probe_ranks_informative_features_first() -> None:
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2], 40)
    informative = np.eye(3)[y] * 2 + rng.standard_normal((120, 3))
    noise = rng.standard_normal((120, 3))
    ours = probe_score(informative, y)
    reference = cross_val_score(LogisticRegression(max_iter=1000), StandardScaler().fit_transform(informative), y,
                                cv=StratifiedKFold(5, shuffle=True, random_state=0), scoring="f1_macro").mean()
    assert ours == pytest.approx(reference, abs=0.05)
    assert ours > 0.7
    assert probe_score(noise, y) < 0.5
    folds = stratified_folds(y, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(120))
    assert all(np.bincount(y[f], minlength=3).min() >= 7 for f in folds)
    sel = select_positions([noise, informative], [noise, informative @ rng.standard_normal((3, 4)), noise], y)
    assert (sel.in_layer, sel.out_layer) == (1, 1)
    with pytest.raises(ValueError, match="single class"):
        probe_score(informative, np.zeros(120, int))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 4, 300))
    ours = classification_metrics(y_true, y_pred, 4)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert ours["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert ours["f1_macro"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert ours["f1_weighted"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted"))
    assert ours["cohen_kappa"] == pytest.approx(skm.cohen_kappa_score(y_true, y_pred))
