"""Parity of an exported variant against PyTorch fp32 on the same real windows, and the task-metric gate.

Tensor closeness is the gate for fp32 (allclose) and fp16 (cosine); INT8 is judged on what users see —
argmax agreement and the balanced-accuracy delta on held-out windows — never on tensor difference alone.
NumPy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgebridge.metrics import classification_metrics

FP32_ATOL, FP32_RTOL = 1e-4, 1e-3
FP16_MIN_COSINE = 0.999
#: Largest INT8 balanced-accuracy drop vs fp32 on the check windows, in percentage points.
INT8_MAX_DROP_PT = 1.0


class ParityError(AssertionError):
    """An exported variant does not match PyTorch within its tolerance."""


class Int8GateError(RuntimeError):
    """INT8 lost more task accuracy than allowed; ``report`` holds the figures."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ParityReport:
    """How close ``test`` logits are to ``ref`` logits.

    Attributes:
        max_abs, mean_abs: absolute error over all logits.
        max_excess: max of |Δ| − (atol + rtol·|ref|) at the fp32 tolerance (≤ 0 means allclose passes).
        cosine: cosine of the flattened logit arrays; cosine_min_row: the worst per-window cosine.
        argmax_agreement: fraction of windows with the same predicted class.
    """

    n: int
    max_abs: float
    mean_abs: float
    max_excess: float
    cosine: float
    cosine_min_row: float
    argmax_agreement: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _cos(a: np.ndarray, b: np.ndarray, axis: int | None = None) -> np.ndarray:
    num = np.sum(a * b, axis=axis)
    den = np.linalg.norm(a, axis=axis) * np.linalg.norm(b, axis=axis)
    return np.where(den > 0, num / np.maximum(den, 1e-30), np.where(np.all(a == b, axis=axis), 1.0, 0.0))


def compare(ref: np.ndarray, test: np.ndarray) -> ParityReport:
    """Compare logits of the same windows. Shapes: ref, test (N, K)."""
    ref, test = np.asarray(ref, np.float64), np.asarray(test, np.float64)
    if ref.shape != test.shape or ref.ndim != 2:
        raise ValueError(f"logits must both be (N, K), got {ref.shape} and {test.shape}")
    diff = np.abs(test - ref)
    return ParityReport(
        n=int(ref.shape[0]), max_abs=float(diff.max()), mean_abs=float(diff.mean()),
        max_excess=float((diff - (FP32_ATOL + FP32_RTOL * np.abs(ref))).max()),
        cosine=float(_cos(ref.ravel(), test.ravel())), cosine_min_row=float(np.min(_cos(ref, test, axis=1))),
        argmax_agreement=float(np.mean(ref.argmax(1) == test.argmax(1))))


def check_parity(precision: str, report: ParityReport) -> None:
    """Raise ParityError when ``report`` fails the precision's tolerance (int8 is gated by :func:`int8_gate`)."""
    if precision == "fp32" and report.max_excess > 0:
        raise ParityError(f"fp32 ONNX differs from PyTorch beyond atol={FP32_ATOL}, rtol={FP32_RTOL}: max abs error "
                          f"{report.max_abs:.3g} over {report.n} windows (argmax agreement "
                          f"{report.argmax_agreement:.3f})")
    if precision == "fp16" and report.cosine < FP16_MIN_COSINE:
        raise ParityError(f"fp16 ONNX logits have cosine {report.cosine:.5f} < {FP16_MIN_COSINE} with PyTorch "
                          f"(max abs error {report.max_abs:.3g}); an overflowing LayerNorm is the usual cause")


def task_metrics(logits: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, float]:
    """Classification metrics of argmax predictions. Shapes: logits (N, K), labels (N,)."""
    return classification_metrics(np.asarray(labels), np.asarray(logits).argmax(1), n_classes)


def int8_gate(fp32_metrics: dict[str, float], int8_metrics: dict[str, float], parity: ParityReport,
              max_drop_pt: float = INT8_MAX_DROP_PT, allow_drop: bool = False) -> dict[str, Any]:
    """Compare INT8 with fp32 on balanced accuracy; raise Int8GateError past ``max_drop_pt`` unless allowed.

    Returns the gate record stored in the manifest: both accuracies, the drop in points, threshold, verdict.
    """
    drop_pt = 100.0 * (fp32_metrics["balanced_accuracy"] - int8_metrics["balanced_accuracy"])
    passed = drop_pt <= max_drop_pt
    report = {"metric": "balanced_accuracy", "fp32": fp32_metrics["balanced_accuracy"],
              "int8": int8_metrics["balanced_accuracy"], "drop_pt": drop_pt, "max_drop_pt": max_drop_pt,
              "argmax_agreement": parity.argmax_agreement, "passed": passed, "allowed_drop": bool(allow_drop and not
                                                                                                  passed)}
    if not passed and not allow_drop:
        raise Int8GateError(f"int8 balanced accuracy {report['int8']:.4f} is {drop_pt:.2f} points below fp32 "
                            f"{report['fp32']:.4f} (limit {max_drop_pt} points, argmax agreement "
                            f"{parity.argmax_agreement:.3f}); not shipping int8. Recalibrate (more windows, "
                            "calib_method='percentile'), keep more nodes in float, or pass allow_int8_drop=True "
                            "to ship it anyway (recorded in the manifest).", report)
    return report
