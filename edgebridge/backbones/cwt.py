"""Ricker-wavelet CWT front end of NormWear, in torch (runs inside ``embed``, exports to ONNX) and in NumPy.

NormWear was pre-trained on scalograms from ``scipy.signal.cwt(x, scipy.signal.ricker, widths=np.arange(0.1, 65))``
(65 widths 0.1, 1.1, …, 64.1) of the signal and of its first and second differences. SciPy deprecated both functions
in 1.12 and removed them in 1.15, so this module re-implements SciPy's exact discretisation:

* for each width ``w`` the kernel has ``N = min(10·w, L)`` points, computed as a float exactly as scipy did
  (``np.arange(0, N)`` samples centred at ``(N - 1) / 2``; for NormWear's widths 10·w rounds to whole numbers, but
  the float arithmetic is kept so any other widths are discretised as scipy would have);
* ``Ricker(t) = 2 / (sqrt(3w) π^¼) · (1 − t²/w²) · exp(−t²/(2w²))``;
* ``out[w] = scipy.signal.convolve(x, kernel[::-1], mode="same")`` — zero padding, centre of the full convolution.

In torch all 65 kernels are zero-padded into one ``conv1d`` weight aligned so that each keeps its own 'same'
offset, so one fixed-weight convolution computes the whole scalogram.

NormWear's own repository also ships a torch ``cwt_ricker``/``cwt_wrap`` ("optimized_cwt"). It is a different
discretisation: one kernel length ``min(10·64, L)`` for every width (instead of ``min(10·w, L)``), scales
``arange(0.1, 65, 1)`` built in torch, and symmetric ``padding=len//2`` (which returns L+1 samples for even kernel
lengths). Its output therefore differs numerically (and possibly by one sample in length) from the scipy scalograms
the checkpoint was trained on; this module follows scipy, not that approximation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Widths used by NormWear pre-training (and BioX-Bridge's FOG preprocessing): ``np.arange(0.1, 65)``.
NORMWEAR_WIDTHS: tuple[float, ...] = tuple(float(w) for w in np.arange(0.1, 65))


def ricker_kernel(width: float, n_times: int) -> np.ndarray:
    """SciPy's Ricker kernel for one width, as ``scipy.signal.cwt`` built it for a signal of ``n_times`` samples.

    Shapes: -> (ceil(min(10·width, n_times)),) float64.
    """
    points = min(10.0 * width, float(n_times))  # float on purpose: arange(0, points) and the centre use it as is
    amp = 2.0 / (math.sqrt(3.0 * width) * math.pi ** 0.25)
    t = np.arange(0, points) - (points - 1.0) / 2.0
    wsq = width ** 2
    return amp * (1.0 - t ** 2 / wsq) * np.exp(-(t ** 2) / (2.0 * wsq))


def cwt_ricker_numpy(x: np.ndarray, widths: Sequence[float] = NORMWEAR_WIDTHS) -> np.ndarray:
    """NumPy reference of ``scipy.signal.cwt(x, ricker, widths)`` for one 1-D signal (float64).

    Shapes: x: (L,) -> (n_widths, L).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"cwt_ricker_numpy expects a 1-D signal, got shape {x.shape}")
    out = np.empty((len(widths), x.shape[0]))
    for i, w in enumerate(widths):
        kernel = ricker_kernel(w, x.shape[0])
        full = np.convolve(x, kernel[::-1], mode="full")
        start = (kernel.shape[0] - 1) // 2  # scipy's 'same' = centre of the full convolution
        out[i] = full[start:start + x.shape[0]]
    return out


def diff_stack_numpy(x: np.ndarray) -> np.ndarray:
    """NormWear's three 'channels' per variable: x[2:], first difference[1:], second difference.

    Shapes: (..., T) -> (..., 3, T-2).
    """
    d1 = np.diff(x, axis=-1)
    d2 = np.diff(d1, axis=-1)
    return np.stack([x[..., 2:], d1[..., 1:], d2], axis=-2)


def scalogram_numpy(x: np.ndarray, widths: Sequence[float] = NORMWEAR_WIDTHS) -> np.ndarray:
    """NumPy reference of NormWear's input for one window of ``nvar`` variables (scipy-era ``spec_cwt``).

    Shapes: x: (nvar, T) -> (nvar, 3, T-2, n_widths) float64.
    """
    stacked = diff_stack_numpy(np.asarray(x, dtype=np.float64))
    return np.stack([np.stack([cwt_ricker_numpy(c, widths).T for c in var]) for var in stacked])


def same_conv_weight(widths: Sequence[float], n_times: int) -> tuple[np.ndarray, int]:
    """Pack per-width kernels into one cross-correlation weight with a shared left padding.

    scipy's ``convolve(x, k[::-1], 'same')`` equals the cross-correlation of x with k zero-padded by
    ``len(k)//2`` on the left; each kernel is shifted inside the common weight so that its own offset is kept.

    Returns:
        weight ``(n_widths, 1, K)`` float64 and the common left padding.
    """
    kernels = [ricker_kernel(w, n_times) for w in widths]
    pads = [k.shape[0] // 2 for k in kernels]
    left = max(pads)
    size = max(left - p + k.shape[0] for k, p in zip(kernels, pads, strict=True))
    weight = np.zeros((len(kernels), 1, size))
    for i, (k, p) in enumerate(zip(kernels, pads, strict=True)):
        weight[i, 0, left - p:left - p + k.shape[0]] = k
    return weight, left


class RickerCWT(nn.Module):
    """Fixed-weight CWT for signals of one length, matching scipy's discretisation.

    Args:
        n_times: signal length L the kernels are built for (kernel lengths depend on it).
        widths: Ricker widths (default: NormWear's 65).

    Shapes: (B, L) -> (B, L, n_widths)  (time before scale, NormWear's layout).
    """

    def __init__(self, n_times: int, widths: Sequence[float] = NORMWEAR_WIDTHS) -> None:
        super().__init__()
        if n_times < 1:
            raise ValueError(f"n_times must be positive, got {n_times}")
        weight, left = same_conv_weight(widths, n_times)
        self.n_times = int(n_times)
        self.n_widths = len(widths)
        self.pad = (left, weight.shape[-1] - 1 - left)
        # Not a parameter and not persistent: it is a deterministic function of (widths, n_times), never trained.
        self.register_buffer("weight", torch.from_numpy(weight).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.n_times:
            raise ValueError(f"RickerCWT was built for {self.n_times} samples, got {x.shape[-1]}")
        out = F.conv1d(F.pad(x.unsqueeze(1), self.pad), self.weight.to(x.dtype))
        return out.transpose(1, 2)


class NormWearScalogram(nn.Module):
    """Raw window → NormWear scalograms: per variable x[2:], Δx[1:], Δ²x, each through the Ricker CWT.

    Args:
        n_times: samples per window T (the CWT runs on T-2 samples).

    Shapes: (B, nvar, T) -> (B, nvar, 3, T-2, n_widths).
    """

    def __init__(self, n_times: int, widths: Sequence[float] = NORMWEAR_WIDTHS) -> None:
        super().__init__()
        if n_times < 3:
            raise ValueError(f"need at least 3 samples for the second difference, got {n_times}")
        self.cwt = RickerCWT(n_times - 2, widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, nvar, _ = x.shape
        d1 = x[..., 1:] - x[..., :-1]
        d2 = d1[..., 1:] - d1[..., :-1]
        stacked = torch.stack([x[..., 2:], d1[..., 1:], d2], dim=2)  # (B, nvar, 3, L)
        spec = self.cwt(stacked.reshape(b * nvar * 3, -1))
        return spec.reshape(b, nvar, 3, spec.shape[1], spec.shape[2])
