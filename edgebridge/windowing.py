"""Where windows start: the one definition shared by offline datasets and the streaming ring buffer.

A signal of ``n_samples`` at its own rate is cut into windows ``[k·stride_n, k·stride_n + window_n)`` for
k = 0, 1, … while the window fits. The streaming runtime emits exactly these windows, so live equals offline.
"""

from __future__ import annotations

import numpy as np


def window_starts(n_samples: int, window_n: int, stride_n: int) -> np.ndarray:
    """Start indices of every complete window. Shapes: -> (n_windows,) int64."""
    if window_n <= 0 or stride_n <= 0:
        raise ValueError(f"window_n and stride_n must be positive, got {window_n}, {stride_n}")
    if n_samples < window_n:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - window_n + 1, stride_n, dtype=np.int64)


def cut_windows(x: np.ndarray, window_n: int, stride_n: int) -> np.ndarray:
    """Every complete window of a ``(C, T)`` signal, as a read-only strided view. Shapes: -> (K, C, window_n)."""
    starts = window_starts(x.shape[1], window_n, stride_n)
    if starts.size == 0:
        return np.zeros((0, x.shape[0], window_n), dtype=x.dtype)
    view = np.lib.stride_tricks.sliding_window_view(x, window_n, axis=1)  # (C, T-W+1, W)
    return view[:, starts].transpose(1, 0, 2)
