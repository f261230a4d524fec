"""Per-window signal-quality flags: a window that fails one is reported, not scored.

Electrodes fall off (flat line), amplifiers clip (saturation), radios drop packets (counter gaps), and drivers
hand over NaN. A model fed such a window returns a confident but meaningless label, so the runtime checks each raw
window first. Checks are vectorised over the window and look at nothing outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONFINITE, FLAT, SATURATED, GAP = "nonfinite", "flat", "saturated", "gap"
FLAGS = (NONFINITE, FLAT, SATURATED, GAP)


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the quality checks.

    Attributes:
        flat_std: a channel whose standard deviation is below this (in raw units) is a flat line.
        saturation_fraction: a channel with at least this fraction of samples at a rail is saturated.
        rails: the ADC's ``(low, high)`` limits in raw units; None uses the window's own min and max, which catches
            clipping at an unknown rail (a clean signal touches its extremes at only a few samples).
        max_gap_samples: lost samples tolerated inside a window (0: any gap flags it).
    """

    flat_std: float = 1e-6
    saturation_fraction: float = 0.05
    rails: tuple[float, float] | None = None
    max_gap_samples: int = 0


def window_flags(window: np.ndarray, gap_samples: int = 0, config: QualityConfig | None = None) -> tuple[str, ...]:
    """Names of the checks ``window`` fails, in ``FLAGS`` order; empty when it is fit to score.

    Shapes: window: (C, W) raw samples.
    """
    cfg = config or QualityConfig()
    flags: list[str] = []
    finite = np.isfinite(window)
    if not finite.all():
        flags.append(NONFINITE)
    else:
        std = window.std(axis=1)
        flat = std < cfg.flat_std
        if flat.any():
            flags.append(FLAT)
        if cfg.rails is not None:
            lo, hi = cfg.rails
            at_rail = (window <= lo) | (window >= hi)
        else:
            at_rail = (window == window.min(axis=1, keepdims=True)) | (window == window.max(axis=1, keepdims=True))
        frac = at_rail.mean(axis=1)
        if np.any((frac >= cfg.saturation_fraction) & ~flat):
            flags.append(SATURATED)
    if gap_samples > cfg.max_gap_samples:
        flags.append(GAP)
    return tuple(flags)
