"""Classification metrics from one confusion matrix (NumPy only, so devices and benchmarks can use them too)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Counts ``cm[i, j]`` of true class i predicted as j. Shapes: (N,), (N,) -> (K, K) int64."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.size} vs {y_pred.size}")
    k = int(n_classes if n_classes is not None else max(y_true.max(initial=-1), y_pred.max(initial=-1)) + 1)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b != 0)


def metrics_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro/weighted F1 and Cohen's kappa of a confusion matrix.

    Classes absent from ``y_true`` are left out of the balanced accuracy (as scikit-learn does) and count as
    F1 = 0 in the macro average only if they were predicted.
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    if n == 0:
        raise ValueError("no samples to score")
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    recall = _safe_div(tp, support)
    precision = _safe_div(tp, predicted)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = (support + predicted) > 0
    p_observed = tp.sum() / n
    p_expected = float((support * predicted).sum()) / (n * n)
    kappa = 0.0 if p_expected == 1 else (p_observed - p_expected) / (1 - p_expected)
    return {
        "accuracy": float(p_observed),
        "balanced_accuracy": float(recall[support > 0].mean()),
        "f1_macro": float(f1[present].mean()),
        "f1_weighted": float((f1 * support).sum() / support.sum()),
        "cohen_kappa": float(kappa),
        "n": int(n),
    }


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> dict[str, float]:
    """All metrics of :func:`metrics_from_confusion` for label vectors."""
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, n_classes))


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced loss weights N / (K · count_k) (scikit-learn's "balanced"; 0 for an absent class). (N,) -> (K,)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    return np.divide(np.size(y), n_classes * counts, out=np.zeros(n_classes), where=counts > 0)
