"""SignalSpec: the one description of how a modality's raw samples become model input.

It is written into the bridge checkpoint at training time and copied verbatim into the bundle manifest, so
training, calibration, parity checks and the live runtime all preprocess identically.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

NORMS = ("zscore", "scale", "none")


class SpecError(ValueError):
    """A SignalSpec, or data checked against one, is inconsistent."""


def _samples(seconds: float, fs_hz: float, what: str) -> int:
    """Exact sample count of ``seconds`` at ``fs_hz``; raise when it is not a whole number."""
    n = seconds * fs_hz
    if abs(n - round(n)) > 1e-6 * max(1.0, n):
        raise SpecError(f"{what} of {seconds} s at {fs_hz} Hz is {n:.4f} samples, not a whole number")
    return int(round(n))


@dataclass(frozen=True)
class SignalSpec:
    """Model-input contract of one modality.

    Attributes:
        modality: signal kind, e.g. ``"ppg"``, ``"ecg"``, ``"eeg"``, ``"emg"``.
        fs_hz: sample rate the model expects; raw windows at any other rate are resampled to it.
        channels: channel names, in the order the model expects them.
        window_s: window length in seconds.
        stride_s: hop between consecutive windows in seconds.
        bandpass_hz: ``(lo, hi)`` zero-phase Butterworth band-pass applied inside the window, or None.
        filter_order: Butterworth order of the band-pass.
        notch_hz: mains frequency to notch out (50 or 60), or None.
        detrend: remove a linear trend per channel before filtering.
        norm: ``"zscore"`` (per channel, per window), ``"scale"`` (multiply by ``scale``) or ``"none"``.
        scale: factor for ``norm="scale"`` (e.g. 0.01 for µV → 0.1 mV).
    """

    modality: str
    fs_hz: float
    channels: tuple[str, ...]
    window_s: float
    stride_s: float
    bandpass_hz: tuple[float, float] | None = None
    filter_order: int = 4
    notch_hz: float | None = None
    detrend: bool = False
    norm: str = "zscore"
    scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        if self.bandpass_hz is not None:
            object.__setattr__(self, "bandpass_hz", tuple(float(f) for f in self.bandpass_hz))
        if not self.modality:
            raise SpecError("modality must be a non-empty string")
        if not (math.isfinite(self.fs_hz) and self.fs_hz > 0):
            raise SpecError(f"fs_hz must be positive, got {self.fs_hz}")
        if not self.channels:
            raise SpecError("channels must name at least one channel")
        if len(set(self.channels)) != len(self.channels):
            raise SpecError(f"channel names repeat: {list(self.channels)}")
        if not (self.window_s > 0 and self.stride_s > 0):
            raise SpecError(f"window_s and stride_s must be positive, got {self.window_s}, {self.stride_s}")
        _samples(self.window_s, self.fs_hz, "window_s")
        if self.bandpass_hz is not None:
            lo, hi = self.bandpass_hz
            if not (0 <= lo < hi < self.fs_hz / 2):
                raise SpecError(f"bandpass_hz {self.bandpass_hz} must satisfy 0 <= lo < hi < fs_hz/2 = "
                                f"{self.fs_hz / 2}")
        if self.notch_hz is not None and not (0 < self.notch_hz < self.fs_hz / 2):
            raise SpecError(f"notch_hz {self.notch_hz} must lie below fs_hz/2 = {self.fs_hz / 2}")
        if self.norm not in NORMS:
            raise SpecError(f"unknown norm '{self.norm}'; known: {list(NORMS)}")
        if self.filter_order < 1:
            raise SpecError(f"filter_order must be >= 1, got {self.filter_order}")

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def n_times(self) -> int:
        """Samples per window at the model rate."""
        return _samples(self.window_s, self.fs_hz, "window_s")

    @property
    def input_shape(self) -> tuple[int, int]:
        """Model input shape of one window, ``(C, T)``."""
        return (self.n_channels, self.n_times)

    def window_samples(self, fs_hz: float) -> int:
        """Samples per raw window at a source rate ``fs_hz``."""
        return _samples(self.window_s, fs_hz, "window_s")

    def stride_samples(self, fs_hz: float) -> int:
        """Samples per hop at a source rate ``fs_hz``."""
        return _samples(self.stride_s, fs_hz, "stride_s")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["bandpass_hz"] = list(self.bandpass_hz) if self.bandpass_hz is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SignalSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"unknown SignalSpec field(s) {unknown}; known: {sorted(known)}")
        missing = sorted(f.name for f in fields(cls) if f.name in ("modality", "fs_hz", "channels", "window_s",
                                                                  "stride_s") and f.name not in d)
        if missing:
            raise SpecError(f"SignalSpec is missing field(s) {missing}")
        d = dict(d)
        if d.get("bandpass_hz") is not None:
            d["bandpass_hz"] = tuple(d["bandpass_hz"])
        d["channels"] = tuple(d["channels"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SignalSpec:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> SignalSpec:
        d = self.to_dict()
        d.update(changes)
        return SignalSpec.from_dict(d)
