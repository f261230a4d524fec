"""Recording: time-aligned multi-sensor signals of one session, plus a registry of loaders.

A loader turns a data set on disk into Recordings. It is registered by name and chosen by name
(``get_loader("wesad")``), never by inspecting paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgebridge.registry import Registry

UNLABELLED = -1


@dataclass
class Signal:
    """One sensor's samples. Shapes: data: (C, T) float32 at ``fs_hz``."""

    data: np.ndarray
    fs_hz: float
    channels: tuple[str, ...]

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        self.channels = tuple(self.channels)
        if self.data.ndim != 2:
            raise ValueError(f"signal data must be (C, T), got shape {self.data.shape}")
        if self.data.shape[0] != len(self.channels):
            raise ValueError(f"signal has {self.data.shape[0]} rows but {len(self.channels)} channel names")
        if not self.fs_hz > 0:
            raise ValueError(f"fs_hz must be positive, got {self.fs_hz}")

    @property
    def duration_s(self) -> float:
        return self.data.shape[1] / self.fs_hz

    def select(self, channels: tuple[str, ...]) -> np.ndarray:
        """Rows for ``channels`` in that order. Shapes: -> (len(channels), T)."""
        missing = [c for c in channels if c not in self.channels]
        if missing:
            raise KeyError(f"channels {missing} not in recording channels {list(self.channels)}")
        idx = [self.channels.index(c) for c in channels]
        return self.data[idx]


@dataclass
class Labels:
    """Per-sample class codes at ``fs_hz``; ``UNLABELLED`` (-1) marks undefined samples."""

    codes: np.ndarray
    fs_hz: float
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, dtype=np.int64)
        self.class_names = tuple(self.class_names)
        if self.codes.ndim != 1:
            raise ValueError(f"label codes must be 1-D, got shape {self.codes.shape}")
        valid = self.codes[self.codes != UNLABELLED]
        if valid.size and (valid.min() < 0 or valid.max() >= len(self.class_names)):
            raise ValueError(f"label codes outside 0..{len(self.class_names) - 1} (or {UNLABELLED} for unlabelled)")

    def window_label(self, start_s: float, window_s: float) -> int:
        """The label of ``[start_s, start_s + window_s)`` if constant and defined, else UNLABELLED."""
        a = int(round(start_s * self.fs_hz))
        b = int(round((start_s + window_s) * self.fs_hz))
        seg = self.codes[a:b]
        if seg.size == 0 or b > self.codes.size:
            return UNLABELLED
        first = seg[0]
        return int(first) if first != UNLABELLED and np.all(seg == first) else UNLABELLED


@dataclass
class Recording:
    """Simultaneous signals of one subject/session, keyed by modality."""

    subject: str
    signals: dict[str, Signal]
    labels: Labels | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def signal(self, modality: str) -> Signal:
        if modality not in self.signals:
            raise KeyError(f"recording of subject {self.subject} has no '{modality}' signal; "
                           f"it has {sorted(self.signals)}")
        return self.signals[modality]

    @property
    def duration_s(self) -> float:
        """Length covered by every signal (the shortest one)."""
        return min(s.duration_s for s in self.signals.values())


LoaderFn = Callable[..., Iterator[Recording]]
LOADERS: Registry[LoaderFn] = Registry("loader")


def register_loader(name: str) -> Callable[[LoaderFn], LoaderFn]:
    """Register a function ``(root, **options) -> Iterator[Recording]`` under ``name``."""
    return LOADERS.register(name)


def get_loader(name: str) -> LoaderFn:
    import edgebridge.data  # noqa: F401  (registers the built-in loaders)

    return LOADERS.get(name)
