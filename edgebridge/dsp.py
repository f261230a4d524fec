"""Pure per-window DSP on ``(C, T)`` float32 arrays.

Every function returns a new array, never modifies its input, uses no statistics beyond the window it is given,
and looks at no samples outside it — so a window processed live equals the same window processed offline.
Filter designs are cached because the runtime calls them once per hop with the same parameters.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal as _sig

_EPS = 1e-6


def _as_2d(x: np.ndarray) -> np.ndarray:
    if x.ndim != 2:
        raise ValueError(f"expected a (C, T) window, got shape {x.shape}")
    return x


@lru_cache(maxsize=256)
def _ratio(fs_in_hz: float, fs_out_hz: float) -> tuple[int, int]:
    frac = Fraction(fs_out_hz / fs_in_hz).limit_denominator(1000)
    if abs(float(frac) - fs_out_hz / fs_in_hz) > 1e-9:
        raise ValueError(f"cannot resample {fs_in_hz} Hz -> {fs_out_hz} Hz with a rational ratio of small terms")
    return frac.numerator, frac.denominator


def resample(x: np.ndarray, fs_in_hz: float, fs_out_hz: float, n_out: int | None = None) -> np.ndarray:
    """Polyphase resampling along time (anti-aliased, no wrap-around as in FFT resampling).

    Shapes: x: (C, T_in) -> (C, n_out), n_out defaults to round(T_in * fs_out / fs_in).
    """
    x = _as_2d(x)
    target = int(round(x.shape[1] * fs_out_hz / fs_in_hz)) if n_out is None else n_out
    if fs_in_hz == fs_out_hz:
        y = x.copy()
    else:
        up, down = _ratio(float(fs_in_hz), float(fs_out_hz))
        y = _sig.resample_poly(x, up, down, axis=1, padtype="line")
    if y.shape[1] > target:
        y = y[:, :target]
    elif y.shape[1] < target:
        y = np.pad(y, ((0, 0), (0, target - y.shape[1])), mode="edge")
    return y.astype(np.float32, copy=False)


@lru_cache(maxsize=256)
def _bandpass_sos(fs_hz: float, lo_hz: float, hi_hz: float, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order sections and their step-response initial state (``sosfilt_zi``), designed once per setting."""
    if lo_hz <= 0:
        sos = _sig.butter(order, hi_hz, btype="lowpass", fs=fs_hz, output="sos")
    else:
        sos = _sig.butter(order, (lo_hz, hi_hz), btype="bandpass", fs=fs_hz, output="sos")
    return sos, _sig.sosfilt_zi(sos)


def _odd_extend(x: np.ndarray, n: int) -> np.ndarray:
    """Odd reflection of ``n`` samples at both ends of time (as scipy's ``odd_ext``). Shapes: (C, T) -> (C, T+2n)."""
    if n == 0:
        return x
    left = 2 * x[:, :1] - x[:, n:0:-1]
    right = 2 * x[:, -1:] - x[:, -2:-(n + 2):-1]
    return np.concatenate((left, x, right), axis=1)


def sos_bandpass(x: np.ndarray, fs_hz: float, lo_hz: float, hi_hz: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass inside the window (``lo_hz == 0`` gives a low-pass).

    The same arithmetic as ``scipy.signal.sosfiltfilt`` with odd padding, but the initial filter state comes from
    the cached design instead of being solved again for every window (half the per-window DSP time live).

    Shapes: x: (C, T) -> (C, T).
    """
    x = _as_2d(x)
    sos, zi = _bandpass_sos(float(fs_hz), float(lo_hz), float(hi_hz), int(order))
    padlen = min(3 * (2 * len(sos) + 1), x.shape[1] - 1)
    ext = _odd_extend(x, padlen)  # in the input's dtype, as scipy does; sosfilt then works in float64
    zi = zi[:, None, :]  # (sections, 1, 2): broadcast over channels
    y, _ = _sig.sosfilt(sos, ext, axis=1, zi=zi * ext[None, :, :1])
    y, _ = _sig.sosfilt(sos, y[:, ::-1], axis=1, zi=zi * y[None, :, -1:])
    y = y[:, ::-1]
    if padlen:
        y = y[:, padlen:-padlen]
    return np.ascontiguousarray(y, dtype=np.float32)


@lru_cache(maxsize=64)
def _notch_ba(fs_hz: float, f0_hz: float, quality: float) -> tuple[np.ndarray, np.ndarray]:
    return _sig.iirnotch(f0_hz, quality, fs=fs_hz)


def notch(x: np.ndarray, fs_hz: float, f0_hz: float, quality: float = 30.0) -> np.ndarray:
    """Zero-phase IIR notch at ``f0_hz`` (mains interference). Shapes: (C, T) -> (C, T)."""
    x = _as_2d(x)
    b, a = _notch_ba(float(fs_hz), float(f0_hz), float(quality))
    padlen = min(3 * max(len(a), len(b)), x.shape[1] - 1)
    return _sig.filtfilt(b, a, x, axis=1, padlen=padlen).astype(np.float32, copy=False)


def detrend(x: np.ndarray) -> np.ndarray:
    """Remove the least-squares line from each channel. Shapes: (C, T) -> (C, T)."""
    return _sig.detrend(_as_2d(x), axis=1, type="linear").astype(np.float32, copy=False)


def zscore(x: np.ndarray) -> np.ndarray:
    """Per-channel standardisation with this window's own mean and std. Shapes: (C, T) -> (C, T)."""
    x = _as_2d(x)
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    return ((x - mean) / (std + _EPS)).astype(np.float32, copy=False)
