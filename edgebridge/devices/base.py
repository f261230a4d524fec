"""What every acquisition source returns, and how sources are chosen by URI.

A source is a context manager that yields ``Chunk``s of contiguous samples. Timestamps come from the sample
counter divided by the rate, never from arrival time (USB/BLE/pty delivery jitters by milliseconds), and the
counter of the first sample travels with each chunk so a consumer sees gaps (``chunk.counter`` jumps).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgebridge.registry import Registry

log = logging.getLogger(__name__)

STREAM_EXTRA = "pip install 'edgebridge[stream]'"


class SourceError(RuntimeError):
    """A source cannot be opened or configured (bad URI, missing package, unknown board)."""


def missing_extra(package: str) -> SourceError:
    """One-line error for an optional dependency that is not installed."""
    return SourceError(f"the '{package}' package is needed for this source; install it with {STREAM_EXTRA}")


@dataclass
class Chunk:
    """Contiguous samples from one source.

    Attributes:
        data: samples, float32.
        t_s: timestamp of each sample in seconds, ``(counter + i) / fs_hz`` (device clock, not arrival time).
        fs_hz: nominal sample rate.
        channels: channel names, one per row of ``data``.
        counter: index of the first sample since the source started; the next chunk starts at
            ``counter + n`` unless samples were lost.

    Shapes: data: (C, n) float32; t_s: (n,) float64.
    """

    data: np.ndarray
    t_s: np.ndarray
    fs_hz: float
    channels: tuple[str, ...]
    counter: int

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        self.t_s = np.asarray(self.t_s, dtype=np.float64)
        if self.data.ndim != 2 or self.data.shape[0] != len(self.channels):
            raise ValueError(f"chunk data must be (C={len(self.channels)}, n), got shape {self.data.shape}")
        if self.t_s.shape != (self.data.shape[1],):
            raise ValueError(f"chunk has {self.data.shape[1]} samples but {self.t_s.shape} timestamps")

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[1])

    @property
    def next_counter(self) -> int:
        return self.counter + self.n_samples

    @classmethod
    def from_counter(cls, data: np.ndarray, fs_hz: float, channels: tuple[str, ...], counter: int) -> Chunk:
        """Build a chunk whose timestamps are ``counter / fs_hz`` onwards. Shapes: data: (C, n)."""
        n = np.shape(data)[1]
        t_s = (counter + np.arange(n, dtype=np.float64)) / fs_hz
        return cls(data=data, t_s=t_s, fs_hz=float(fs_hz), channels=tuple(channels), counter=int(counter))


@dataclass
class SourceStats:
    """Counters every source keeps; live sources add reconnects and lost samples."""

    samples: int = 0
    chunks: int = 0
    gaps: int = 0
    gap_samples: int = 0
    reconnects: int = 0
    resets: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class Source(Protocol):
    """Acquisition source: ``with src: chunk = src.read(0.1)``.

    ``__enter__`` starts acquisition, ``__exit__`` stops it and releases the device. ``read`` returns the samples
    that arrived since the last call (``None`` when none came within ``timeout_s``). ``finished`` becomes True
    when a finite source (a replayed file) has delivered everything; live sources never finish.
    """

    fs_hz: float
    channels: tuple[str, ...]
    finished: bool
    stats: SourceStats

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: object) -> None: ...

    def read(self, timeout_s: float = 0.1) -> Chunk | None: ...


SourceFactory = Callable[..., Source]
SOURCES: Registry[SourceFactory] = Registry("source scheme")


def register_source(scheme: str) -> Callable[[SourceFactory], SourceFactory]:
    """Register a factory ``(rest_of_uri: str, **options) -> Source`` under a URI scheme."""
    return SOURCES.register(scheme)


def parse_uri(uri: str) -> tuple[str, str]:
    """Split ``"scheme:rest"``; ``rest`` may itself contain colons (``serial:/dev/ttyACM0``, ``file:C:/x.npz``)."""
    scheme, sep, rest = uri.partition(":")
    if not sep or not scheme:
        raise SourceError(f"source URI '{uri}' must look like 'scheme:target', e.g. 'brainflow:synthetic', "
                          f"'serial:/dev/ttyACM0', 'file:rec.npz'; schemes: {SOURCES.names()}")
    return scheme, rest


def open_source(uri: str, **options: Any) -> Source:
    """Create (not start) the source named by ``uri``; keyword options go to the source's constructor.

    Example: ``with open_source("brainflow:synthetic", modality="ecg") as src: ...``
    """
    scheme, rest = parse_uri(uri)
    return SOURCES.get(scheme)(rest, **options)


class ChunkAssembler:
    """Turns ``(device counters, samples)`` blocks into contiguous Chunks, split at counter gaps.

    Live sources (serial, BrainFlow, LSL) hand over whatever arrived; a chunk must be gap-free, so a block with a
    lost stretch is returned in pieces over successive ``pop`` calls. Gaps are counted in ``stats``.

    Shapes: add: counters (n,) int64 (monotonic, already unwrapped), values (C, n).
    """

    def __init__(self, fs_hz: float, channels: tuple[str, ...], stats: SourceStats) -> None:
        self.fs_hz, self.channels, self.stats = fs_hz, channels, stats
        self._counters: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._origin: int | None = None
        self._next: int | None = None

    def __bool__(self) -> bool:
        return bool(self._counters)

    def add(self, counters: np.ndarray, values: np.ndarray) -> None:
        if len(counters):
            self._counters.append(np.asarray(counters, dtype=np.int64))
            self._values.append(np.asarray(values, dtype=np.float32))

    def pop(self) -> Chunk | None:
        """The oldest contiguous run of samples, or None when nothing is pending."""
        if not self._counters:
            return None
        counters = np.concatenate(self._counters)
        values = np.concatenate(self._values, axis=1)
        breaks = np.flatnonzero(np.diff(counters) != 1)
        k = int(breaks[0]) + 1 if breaks.size else counters.size
        self._counters, self._values = ([counters[k:]], [values[:, k:]]) if k < counters.size else ([], [])
        first = int(counters[0])
        if self._origin is None:
            self._origin = first
        elif first != self._next:
            self.stats.gaps += 1
            self.stats.gap_samples += max(0, first - self._next)
            log.info("%d sample(s) lost before device counter %d", first - self._next, first)
        self._next = int(counters[k - 1]) + 1
        self.stats.samples += k
        self.stats.chunks += 1
        return Chunk.from_counter(values[:, :k], self.fs_hz, self.channels, first - self._origin)
