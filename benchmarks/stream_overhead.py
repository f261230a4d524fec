"""Runtime overhead per window: windower push cost, quality check, Preprocessor, and runner bookkeeping.

Usage: ``python benchmarks/stream_overhead.py`` (prints one JSON object; CPU only, no device needed).
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from edgebridge.devices.base import Chunk
from edgebridge.devices.replay import ReplaySource
from edgebridge.runtime.buffer import Windower
from edgebridge.runtime.quality import window_flags
from edgebridge.runtime.stream import StreamRunner
from edgebridge.spec import SignalSpec

log = logging.getLogger("stream_overhead")


class ZeroBackend:
    """Costs nothing, so the runner's own overhead is what remains."""

    def __init__(self, k: int) -> None:
        self.k = k

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.zeros((x.shape[0], self.k), np.float32)


def push_cost_us_per_s(spec: SignalSpec, fs_hz: float, chunk_n: int, seconds: float = 120.0) -> float:
    """CPU µs spent in Windower.push per second of signal."""
    x = np.random.default_rng(0).standard_normal((spec.n_channels, int(seconds * fs_hz))).astype(np.float32)
    chunks = [Chunk.from_counter(x[:, a:a + chunk_n], fs_hz, spec.channels, a) for a in range(0, x.shape[1], chunk_n)]
    w = Windower(spec, fs_hz)
    t0 = time.process_time()
    for c in chunks:
        w.push(c)
    return (time.process_time() - t0) * 1e6 / seconds


def main() -> None:
    fs_hz = 250.0
    spec = SignalSpec("ecg", 125.0, ("a", "b", "c"), window_s=8.0, stride_s=1.0, bandpass_hz=(0.5, 40.0))
    out: dict[str, object] = {"spec": "3 ch, 250 Hz device -> 125 Hz model, 8 s window, 1 s stride, band-pass"}
    out["windower_push_us_per_signal_s"] = {n: round(push_cost_us_per_s(spec, fs_hz, n), 1) for n in (1, 10, 50, 250)}
    win = np.random.default_rng(1).standard_normal((3, 2000)).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(2000):
        window_flags(win)
    out["quality_us_per_window"] = round((time.perf_counter() - t0) / 2000 * 1e6, 1)
    x = np.random.default_rng(2).standard_normal((3, int(600 * fs_hz))).astype(np.float32)
    src = ReplaySource(x, fs_hz, spec.channels, chunk_samples=25)
    with src, StreamRunner(spec, ZeroBackend(3), src, ("a", "b", "c"), lossless=True) as run:
        t0 = time.perf_counter()
        preds = list(run)
        wall = time.perf_counter() - t0
        stats = run.stats
    dsp = np.array([p.latency_ms["dsp"] for p in preds])
    infer = np.array([p.latency_ms["infer"] for p in preds])
    queue = np.array([p.latency_ms["queue"] for p in preds])
    out["runner"] = {"windows": stats.windows, "wall_ms_per_window": round(wall / len(preds) * 1e3, 3),
                     "dsp_ms_p50": round(float(np.median(dsp)), 3),
                     "dsp_ms_p99": round(float(np.percentile(dsp, 99)), 3),
                     "overhead_ms_per_window": round(wall / len(preds) * 1e3 - dsp.mean() - infer.mean(), 3),
                     "queue_ms_p50_lossless_backlog": round(float(np.median(queue)), 3),
                     "total_ms_p50": round(stats.latency_ms_p50, 3), "total_ms_p99": round(stats.latency_ms_p99, 3)}
    print(json.dumps(out, indent=1))  # noqa: T201  (a benchmark script's output is its result)


if __name__ == "__main__":
    main()
