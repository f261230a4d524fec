"""StreamRunner: live samples → windows → Preprocessor → backend → Prediction, as a generator.

Acquisition never waits on inference: a reader thread drains the source into the ring buffer and cuts windows,
which go through a small bounded queue to the inference side (the thread iterating the runner). When inference falls
behind, the OLDEST queued window is dropped and counted, so predictions stay fresh instead of lagging further and
further behind the sensor. ``lossless=True`` makes the reader wait instead (offline evaluation of a replayed file).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgebridge.devices.base import Source
from edgebridge.preprocess import Preprocessor
from edgebridge.runtime.buffer import Window, Windower
from edgebridge.runtime.quality import QualityConfig, window_flags
from edgebridge.spec import SignalSpec, SpecError

log = logging.getLogger(__name__)


class Backend(Protocol):
    """An inference engine (ORT, TensorRT, NumPy). Shapes: x: (B, C, T) float32 -> logits (B, K)."""

    def run(self, x: np.ndarray) -> np.ndarray: ...


@dataclass
class Prediction:
    """One window's result. ``label``/``probs`` are None when a quality flag kept the window from being scored.

    ``latency_ms``: ``dsp`` (Preprocessor), ``infer`` (backend), ``queue`` (wait before inference) and ``total``
    (from the moment the window's last sample was in the buffer to this prediction). Shapes: probs: (K,) float32.
    """

    t_end_s: float
    start_index: int
    label: str | None
    probs: np.ndarray | None
    flags: tuple[str, ...]
    latency_ms: dict[str, float]

    @property
    def scored(self) -> bool:
        return self.label is not None

    def to_dict(self) -> dict[str, Any]:
        return {"t_end_s": self.t_end_s, "start_index": self.start_index, "label": self.label,
                "probs": None if self.probs is None else [float(p) for p in self.probs],
                "flags": list(self.flags), "latency_ms": {k: round(v, 4) for k, v in self.latency_ms.items()}}


@dataclass
class RunnerStats:
    """Counters of a running stream; latencies are over the most recent scored windows."""

    windows: int = 0
    scored: int = 0
    flagged: int = 0
    drops: int = 0
    reconnects: int = 0
    gaps: int = 0
    latency_ms_p50: float = float("nan")
    latency_ms_p99: float = float("nan")
    flag_counts: dict[str, int] = field(default_factory=dict)


_END = object()


class _DropOldestQueue:
    """Bounded FIFO; ``put`` on a full queue discards the oldest item (or waits, when lossless)."""

    def __init__(self, maxsize: int, lossless: bool) -> None:
        self.maxsize, self.lossless = maxsize, lossless
        self._items: deque = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.drops = 0

    def put(self, item: object) -> None:
        with self._cond:
            if self.lossless:
                self._cond.wait_for(lambda: len(self._items) < self.maxsize or self._closed)
            elif len(self._items) >= self.maxsize:
                self._items.popleft()
                self.drops += 1
            if not self._closed:
                self._items.append(item)
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout_s: float) -> object | None:
        """Next item, ``_END`` once closed and empty, None on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout_s)
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            return _END if self._closed else None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Shapes: (K,) -> (K,)."""
    z = np.exp(logits - np.max(logits))
    return z / z.sum()


class StreamRunner:
    """Runs a backend on a live source: ``with src, StreamRunner(spec, backend, src, names) as run: for p in run``.

    Args:
        spec: the model's SignalSpec (from the bundle manifest).
        backend: anything with ``run(x (B, C, T)) -> logits (B, K)``.
        source: an acquisition Source (entered by the caller).
        class_names: label of each logit.
        fs_hz: expected source rate; when given it must equal ``source.fs_hz``. The source rate may differ from
            ``spec.fs_hz``: the Preprocessor resamples each window.
        queue_size: windows waiting for inference before the oldest is dropped.
        lossless: wait for inference instead of dropping (for replayed files, never for live sensors).
        quality: thresholds of the per-window quality checks.
        yield_flagged: also yield Predictions (unscored, with flags) for windows that failed a check.
    """

    def __init__(self, spec: SignalSpec, backend: Backend, source: Source, class_names: Sequence[str],
                 fs_hz: float | None = None, queue_size: int = 4, lossless: bool = False,
                 quality: QualityConfig | None = None, yield_flagged: bool = True,
                 read_timeout_s: float = 0.05) -> None:
        n_src = len(source.channels)
        if n_src != spec.n_channels:
            raise SpecError(f"source has {n_src} channel(s) {list(source.channels)} but the model expects "
                            f"{spec.n_channels} {list(spec.channels)}")
        if fs_hz is not None and abs(float(fs_hz) - float(source.fs_hz)) > 1e-9 * fs_hz:
            raise SpecError(f"source runs at {source.fs_hz} Hz but fs_hz={fs_hz} Hz was expected")
        if tuple(source.channels) != spec.channels:
            log.info("source channels %s feed model channels %s in that order", source.channels, spec.channels)
        self.spec, self.backend, self.source = spec, backend, source
        self.fs_hz = float(source.fs_hz)
        self.class_names = tuple(class_names)
        self.preprocessor = Preprocessor(spec, self.fs_hz)  # raises on a window/stride that is not whole at fs
        self.windower = Windower(spec, self.fs_hz, n_channels=n_src)
        self._check_backend()
        self.quality = quality or QualityConfig()
        self.yield_flagged, self.read_timeout_s = yield_flagged, read_timeout_s
        self._queue = _DropOldestQueue(queue_size, lossless)
        self._stats = RunnerStats()
        self._latencies: deque[float] = deque(maxlen=4096)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _check_backend(self) -> None:
        """Dry run on a zero window: a Preprocessor or backend/class-name mismatch fails here, not mid-stream."""
        x = self.preprocessor(np.zeros(self.preprocessor.input_shape, np.float32))[None]
        logits = np.asarray(self.backend.run(x))
        if logits.shape != (1, len(self.class_names)):
            raise SpecError(f"backend returns logits of shape {logits.shape} for one window, but "
                            f"{len(self.class_names)} class names were given: {list(self.class_names)}")

    def start(self) -> StreamRunner:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._acquire, name="edgebridge-acquire", daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        """Stop acquisition and end iteration; thread-safe, idempotent, callable from a signal handler."""
        self._stop.set()
        self._queue.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def __enter__(self) -> StreamRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _acquire(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self.source.read(self.read_timeout_s)
                if chunk is None:
                    if self.source.finished:
                        break
                    continue
                windows = self.windower.push(chunk)
                t_ready = time.perf_counter()
                for w in windows:
                    self._queue.put((w, window_flags(w.data, w.gap_samples, self.quality), t_ready))
                self._stats.windows += len(windows)
        except Exception as e:  # handed to the consumer thread, which re-raises it
            log.error("acquisition failed: %s", e)
            self._error = e
        finally:
            self._queue.close()

    def __iter__(self) -> Iterator[Prediction]:
        self.start()
        while True:
            item = self._queue.get(0.1)
            if item is None:
                continue
            if item is _END or self._stop.is_set():
                break
            pred = self._predict(*item)
            if pred.scored or self.yield_flagged:
                yield pred
        if self._error is not None:
            raise RuntimeError(f"stream acquisition failed: {self._error}") from self._error

    def _predict(self, w: Window, flags: tuple[str, ...], t_ready: float) -> Prediction:
        t0 = time.perf_counter()
        if flags:
            self._stats.flagged += 1
            for f in flags:
                self._stats.flag_counts[f] = self._stats.flag_counts.get(f, 0) + 1
            lat = {"dsp": 0.0, "infer": 0.0, "queue": (t0 - t_ready) * 1e3, "total": (t0 - t_ready) * 1e3}
            return Prediction(w.t_end_s, w.start_index, None, None, flags, lat)
        x = self.preprocessor(w.data)[None]
        t1 = time.perf_counter()
        logits = np.asarray(self.backend.run(x), dtype=np.float32)[0]
        t2 = time.perf_counter()
        probs = softmax(logits).astype(np.float32)
        lat = {"dsp": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "queue": (t0 - t_ready) * 1e3,
               "total": (t2 - t_ready) * 1e3}
        self._stats.scored += 1
        self._latencies.append(lat["total"])
        return Prediction(w.t_end_s, w.start_index, self.class_names[int(np.argmax(logits))], probs, (), lat)

    @property
    def stats(self) -> RunnerStats:
        """Snapshot of the counters (windows, drops, reconnects, p50/p99 total latency, …)."""
        s = self._stats
        lat = np.fromiter(self._latencies, dtype=np.float64)
        p50, p99 = np.percentile(lat, [50, 99]) if lat.size else (float("nan"), float("nan"))
        src = getattr(self.source, "stats", None)
        return RunnerStats(windows=s.windows, scored=s.scored, flagged=s.flagged, drops=self._queue.drops,
                           reconnects=getattr(src, "reconnects", 0), gaps=self.windower.gaps,
                           latency_ms_p50=float(p50), latency_ms_p99=float(p99), flag_counts=dict(s.flag_counts))
