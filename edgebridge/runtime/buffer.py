"""Fixed-memory ring buffer and the streaming windower.

The windower cuts exactly the windows ``windowing.cut_windows`` cuts from the whole signal (same start indices,
counted from the first sample), whatever the chunk sizes, so a live stream equals the offline data set window for
window. Memory is preallocated; a push costs O(chunk) copies and no per-sample Python work.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from edgebridge.devices.base import Chunk
from edgebridge.spec import SignalSpec

log = logging.getLogger(__name__)


class RingBuffer:
    """Last ``capacity_samples`` samples of a multi-channel stream, readable as contiguous slices.

    Each sample is stored twice (at ``i % cap`` and ``i % cap + cap``), so any span of at most ``cap`` recent
    samples is one contiguous slice: reading a window is a single copy, never a concatenate.

    Shapes: push data: (C, n); read -> (C, n) float32.
    """

    def __init__(self, n_channels: int, capacity_samples: int) -> None:
        if n_channels < 1 or capacity_samples < 1:
            raise ValueError(f"need n_channels >= 1 and capacity_samples >= 1, got {n_channels}, {capacity_samples}")
        self.n_channels = int(n_channels)
        self.capacity = int(capacity_samples)
        self._buf = np.zeros((self.n_channels, 2 * self.capacity), dtype=np.float32)
        self.total = 0  # samples pushed since creation (absolute index of the next sample)

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.total - self.capacity)

    def _write(self, data: np.ndarray) -> None:
        cap = self.capacity
        n = data.shape[1]
        if n > cap:  # only the newest cap samples survive
            self.total += n - cap
            data = data[:, n - cap:]
            n = cap
        pos = self.total % cap
        k = min(n, cap - pos)
        self._buf[:, pos:pos + k] = data[:, :k]
        self._buf[:, pos + cap:pos + cap + k] = data[:, :k]
        if k < n:
            self._buf[:, :n - k] = data[:, k:]
            self._buf[:, cap:cap + n - k] = data[:, k:]
        self.total += n

    def push(self, data: np.ndarray) -> None:
        """Append samples. Shapes: data: (C, n)."""
        if data.ndim != 2 or data.shape[0] != self.n_channels:
            raise ValueError(f"expected ({self.n_channels}, n) samples, got shape {data.shape}")
        self._write(data)

    def push_fill(self, n: int, value: float = np.nan) -> None:
        """Append ``n`` samples of ``value`` (lost samples); costs O(min(n, capacity))."""
        if n <= 0:
            return
        keep = min(n, self.capacity)
        self.total += n - keep
        self._write(np.full((self.n_channels, keep), value, dtype=np.float32))

    def read(self, start: int, n: int) -> np.ndarray:
        """Copy of samples ``[start, start + n)`` (absolute indices). Shapes: -> (C, n) float32."""
        if n > self.capacity or start < self.oldest or start + n > self.total or start < 0:
            raise IndexError(f"samples [{start}, {start + n}) are not in the buffer, which holds "
                             f"[{self.oldest}, {self.total})")
        p = start % self.capacity
        return self._buf[:, p:p + n].copy()


@dataclass(frozen=True)
class Window:
    """One raw window as the windower emits it; unpacks as ``(data, t_end_s, start_index)``.

    ``gap_samples`` counts lost samples (NaN-filled) inside it. Shapes: data: (C, W) float32.
    """

    data: np.ndarray
    t_end_s: float
    start_index: int
    gap_samples: int = 0

    def __iter__(self) -> Iterator:
        return iter((self.data, self.t_end_s, self.start_index))


class Windower:
    """Chunks in, ``(window, t_end_s, start_index)`` out every stride, identical to ``cut_windows`` offline.

    Lost samples (a jump in ``chunk.counter``) are filled with NaN so later windows keep their offline positions;
    ``Window.gap_samples`` says how many samples of a window were lost. ``start_index`` counts samples from the first
    one received; ``t_end_s`` is the device time just after the window's last sample.

    Args:
        spec: model-side SignalSpec (window and stride length).
        fs_hz: rate of the incoming samples (may differ from ``spec.fs_hz``; the Preprocessor resamples).
        n_channels: rows per chunk (default ``spec.n_channels``).
        capacity_samples: ring size; default one window plus one stride plus 256 samples of slack.
    """

    def __init__(self, spec: SignalSpec, fs_hz: float, n_channels: int | None = None,
                 capacity_samples: int | None = None) -> None:
        self.spec = spec
        self.fs_hz = float(fs_hz)
        self.window_n = spec.window_samples(self.fs_hz)
        self.stride_n = spec.stride_samples(self.fs_hz)
        n_channels = spec.n_channels if n_channels is None else n_channels
        cap = capacity_samples if capacity_samples is not None else self.window_n + self.stride_n + 256
        if cap <= self.window_n:
            raise ValueError(f"capacity_samples {cap} must exceed the window ({self.window_n} samples)")
        self.ring = RingBuffer(n_channels, cap)
        self.next_start = 0
        self.skipped = 0  # windows overwritten before they could be cut (only after gaps longer than the ring)
        self.gaps = 0
        self.lost_samples = 0
        self.resets = 0
        self._origin: int | None = None  # device counter of sample index 0
        self._gaps: deque[tuple[int, int]] = deque()  # [a, b) absolute index ranges of lost samples

    @property
    def samples_seen(self) -> int:
        return self.ring.total

    def _gap_samples(self, start_index: int) -> int:
        """Lost samples inside the window that starts at ``start_index``."""
        a, b = start_index, start_index + self.window_n
        return sum(max(0, min(b, gb) - max(a, ga)) for ga, gb in self._gaps)

    def _sync_counter(self, chunk: Chunk) -> None:
        if self._origin is None:
            self._origin = chunk.counter
            return
        gap = chunk.counter - (self._origin + self.ring.total)
        if gap > 0:
            self._gaps.append((self.ring.total, self.ring.total + gap))
            self.gaps += 1
            self.lost_samples += gap
            self.ring.push_fill(gap)
        elif gap < 0:  # the device restarted its counter: carry on, positions follow the samples received
            log.warning("sample counter went back by %d; treating the chunk as contiguous", -gap)
            self.resets += 1
            self._origin += gap

    def push(self, chunk: Chunk) -> list[Window]:
        """Add a chunk; return every window completed by it, oldest first."""
        if chunk.data.shape[0] != self.ring.n_channels:
            raise ValueError(f"chunk has {chunk.data.shape[0]} channels, the windower expects {self.ring.n_channels}")
        while self._gaps and self._gaps[0][1] <= self.next_start:
            self._gaps.popleft()
        self._sync_counter(chunk)
        out: list[Window] = []
        self._emit(out)  # windows completed by a gap fill
        step = self.ring.capacity - self.window_n  # a piece this long never overwrites an un-cut window
        data = chunk.data
        for a in range(0, data.shape[1], step):
            self.ring.push(data[:, a:a + step])
            self._emit(out)
        return out

    def _emit(self, out: list[Window]) -> None:
        total, w = self.ring.total, self.window_n
        if self.next_start < self.ring.oldest and self.next_start + w <= total:
            k = -(-(self.ring.oldest - self.next_start) // self.stride_n)
            self.skipped += k
            self.next_start += k * self.stride_n
            log.warning("skipped %d windows whose samples were lost", k)
        origin = self._origin or 0
        while self.next_start + w <= total:
            s = self.next_start
            gap = self._gap_samples(s) if self._gaps else 0
            out.append(Window(self.ring.read(s, w), (origin + s + w) / self.fs_hz, s, gap))
            self.next_start += self.stride_n

    def windows(self, chunks: Iterable[Chunk]) -> Iterator[Window]:
        """Generator form: every window of a chunk stream."""
        for chunk in chunks:
            yield from self.push(chunk)
