"""Where to connect the two models (BioX-Bridge §3, two stages, forward passes only).

1. m = the new-model block whose pooled output best predicts the old model's pseudo-labels with a linear probe
   (stratified k-fold CV, macro-F1).
2. l = the old-model block whose pooled input is most similar to block-m features by linear CKA.

Linear CKA is computed from feature covariances — O(N·d²) time and O(d²) memory — never from N×N Gram matrices
(the upstream selector built those and ran out of memory on large pair splits).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

from edgebridge.metrics import classification_metrics

log = logging.getLogger(__name__)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between two feature sets of the same N samples, in covariance form.

    CKA = ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) with X, Y column-centred. Shapes: x (N, d1), y (N, d2) -> scalar.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same samples: {x.shape[0]} vs {y.shape[0]} rows")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    cross = np.linalg.norm(x.T @ y) ** 2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norm) if norm > 0 else 0.0


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int = 0) -> list[np.ndarray]:
    """Deterministic stratified fold assignment; returns the test indices of each fold."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            folds[j % n_folds].append(int(i))
    return [np.sort(np.array(f, dtype=np.int64)) for f in folds]


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 1.0, max_iter: int = 100
                 ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Multinomial logistic regression (L-BFGS, L2 like scikit-learn's C=1/l2) on standardised features."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-8
    xt = torch.from_numpy(((x - mean) / std).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")
    reg = l2 / (2 * len(y))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + reg * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach(), mean, std


def probe_score(features: np.ndarray, labels: np.ndarray, n_folds: int = 5, seed: int = 0) -> float:
    """Mean macro-F1 of a linear probe over stratified folds. Shapes: features (N, d), labels (N,)."""
    classes, y = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise ValueError("the old model predicts a single class on these windows, so no layer can be ranked by "
                         "probing; set bridge.in_layer explicitly")
    n_folds = int(min(n_folds, np.bincount(y).min()))
    if n_folds < 2:
        raise ValueError("a pseudo-label class has a single window; need at least 2 per class for cross-validation")
    scores = []
    for test_idx in stratified_folds(y, n_folds, seed):
        train_idx = np.setdiff1d(np.arange(y.size), test_idx)
        w, b, mean, std = fit_logistic(np.asarray(features[train_idx]), y[train_idx], classes.size)
        logits = torch.from_numpy(((np.asarray(features[test_idx]) - mean) / std).astype(np.float32)) @ w + b
        pred = logits.argmax(dim=1).numpy()
        scores.append(classification_metrics(y[test_idx], pred, classes.size)["f1_macro"])
    return float(np.mean(scores))


@dataclass
class Selection:
    """Result of position selection: chosen (m, l), probe macro-F1 per new block, CKA[m, l] for every pair."""

    in_layer: int
    out_layer: int
    probe_f1: list[float]
    cka: list[list[float]]

    def to_dict(self) -> dict:
        return asdict(self)


def select_positions(new_pooled: list[np.ndarray], old_in_pooled: list[np.ndarray], pseudo_labels: np.ndarray,
                     n_folds: int = 5, seed: int = 0, in_layer: int | None = None,
                     out_layer: int | None = None) -> Selection:
    """Two-stage selection; a given ``in_layer``/``out_layer`` is kept and only the other is searched.

    The full CKA matrix (every m × l) is returned for the heatmap; only row m decides l.
    """
    pseudo_labels = np.asarray(pseudo_labels)
    probe = [probe_score(f, pseudo_labels, n_folds, seed) for f in new_pooled] if in_layer is None else \
        [float("nan")] * len(new_pooled)
    m = int(np.nanargmax(probe)) if in_layer is None else in_layer
    cka = [[linear_cka(fm, fl) for fl in old_in_pooled] for fm in new_pooled]
    l_idx = int(np.argmax(cka[m])) if out_layer is None else out_layer
    log.info("selected new block m=%d (probe macro-F1 %.3f) -> old block l=%d (CKA %.3f)", m, probe[m], l_idx,
             cka[m][l_idx])
    return Selection(m, l_idx, probe, cka)
