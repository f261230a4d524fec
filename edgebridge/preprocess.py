"""Preprocessor: the ONLY path from a raw window to model input.

Training, calibration, parity checks and the streaming runtime all call ``Preprocessor(spec, fs_in_hz)(window)``,
so a window streamed live is processed bit-for-bit like the same window offline.
"""

from __future__ import annotations

import numpy as np

from edgebridge import dsp
from edgebridge.spec import SignalSpec, SpecError


class SignalError(ValueError):
    """A raw window cannot be turned into model input (wrong shape, NaN/inf samples)."""


class Preprocessor:
    """Turns one raw window at ``fs_in_hz`` into the model input described by ``spec``.

    Order: detrend → resample to ``spec.fs_hz`` → notch → band-pass → normalise; all inside the window.

    Args:
        spec: the model-side SignalSpec.
        fs_in_hz: rate of the raw samples (the recording's or the device's); defaults to ``spec.fs_hz``.

    Shapes: window: (C, window_s·fs_in_hz) -> (C, spec.n_times) float32.
    """

    def __init__(self, spec: SignalSpec, fs_in_hz: float | None = None) -> None:
        self.spec = spec
        self.fs_in_hz = float(spec.fs_hz if fs_in_hz is None else fs_in_hz)
        if not self.fs_in_hz > 0:
            raise SpecError(f"fs_in_hz must be positive, got {fs_in_hz}")
        nyquist_in = self.fs_in_hz / 2
        if spec.bandpass_hz is not None and spec.bandpass_hz[1] >= nyquist_in:
            raise SpecError(f"{spec.modality}: band-pass upper edge {spec.bandpass_hz[1]} Hz needs a source rate above "
                            f"{2 * spec.bandpass_hz[1]} Hz, got {self.fs_in_hz} Hz")
        self.n_in = spec.window_samples(self.fs_in_hz)
        self.n_out = spec.n_times

    @property
    def input_shape(self) -> tuple[int, int]:
        """Raw window shape this preprocessor accepts, ``(C, T_in)``."""
        return (self.spec.n_channels, self.n_in)

    def check(self, window: np.ndarray) -> None:
        """Raise SignalError naming the problem when ``window`` cannot be processed."""
        if window.ndim != 2 or window.shape != self.input_shape:
            raise SignalError(f"{self.spec.modality}: expected a raw window of shape {self.input_shape} "
                              f"({self.spec.n_channels} channels × {self.spec.window_s} s at {self.fs_in_hz} Hz), "
                              f"got {tuple(window.shape)}")
        if not np.all(np.isfinite(window)):
            bad = int(np.size(window) - np.count_nonzero(np.isfinite(window)))
            raise SignalError(f"{self.spec.modality}: window has {bad} NaN/inf sample(s)")

    def __call__(self, window: np.ndarray) -> np.ndarray:
        window = np.asarray(window)
        self.check(window)
        x = window.astype(np.float64, copy=True)
        spec = self.spec
        if spec.detrend:
            x = dsp.detrend(x)
        x = dsp.resample(x, self.fs_in_hz, spec.fs_hz, n_out=self.n_out)
        if spec.notch_hz is not None:
            x = dsp.notch(x, spec.fs_hz, spec.notch_hz)
        if spec.bandpass_hz is not None:
            lo, hi = spec.bandpass_hz
            x = dsp.sos_bandpass(x, spec.fs_hz, lo, hi, spec.filter_order)
        if spec.norm == "zscore":
            x = dsp.zscore(x)
        elif spec.norm == "scale":
            x = x * spec.scale
        return np.ascontiguousarray(x, dtype=np.float32)

    def batch(self, windows: np.ndarray) -> np.ndarray:
        """Apply to a stack of raw windows. Shapes: (B, C, T_in) -> (B, C, T_model)."""
        return np.stack([self(w) for w in windows]) if len(windows) else np.zeros((0, *self.spec.input_shape),
                                                                                   np.float32)
