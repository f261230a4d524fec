"""StreamRunner: live predictions equal offline backend(Preprocessor(window)); drops, quality flags, stop, sinks."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from edgebridge.devices.base import Chunk, SourceStats
from edgebridge.devices.replay import ReplaySource
from edgebridge.preprocess import Preprocessor
from edgebridge.runtime import QualityConfig, StreamRunner, window_flags
from edgebridge.runtime.sinks import CallbackSink, open_sink
from edgebridge.runtime.stream import softmax
from edgebridge.spec import SignalSpec, SpecError
from edgebridge.windowing import cut_windows

CLASSES = ("rest", "stress", "amusement")
SPEC = SignalSpec("ecg", 125.0, ("a", "b", "c"), window_s=4.0, stride_s=1.0, bandpass_hz=(0.5, 40.0))


class LinearBackend:
    """A fixed random linear map: logits = flatten(x) @ W.T + b (NumPy stand-in for an ONNX bundle)."""

    def __init__(self, spec: SignalSpec, k: int, seed: int = 0, delay_s: float = 0.0) -> None:
        rng = np.random.default_rng(seed)
        self.w = rng.standard_normal((k, spec.n_channels * spec.n_times)).astype(np.float32) / 30
        self.b = rng.standard_normal(k).astype(np.float32)
        self.delay_s, self.calls = delay_s, 0

    def run(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return x.reshape(x.shape[0], -1) @ self.w.T + self.b


def _recording(n_samples: int, fs_hz: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / fs_hz
    x = np.stack([np.sin(2 * np.pi * (1 + 0.4 * c) * t + 3 * np.sin(0.05 * t)) for c in range(3)])
    return (x + 0.3 * rng.standard_normal(x.shape)).astype(np.float32)


def _offline_probs(backend, x: np.ndarray, fs_hz: float) -> tuple[np.ndarray, list[np.ndarray]]:
    pre = Preprocessor(SPEC, fs_hz)
    wins = cut_windows(x, SPEC.window_samples(fs_hz), SPEC.stride_samples(fs_hz))
    return wins, [softmax(np.asarray(backend.run(pre(w)[None]), np.float32)[0]).astype(np.float32) for w in wins]


def test_stream_predictions_equal_offline_window_by_window() -> None:
    fs_hz = 250.0  # device rate differs from the model's 125 Hz: the Preprocessor resamples every window
    x = _recording(int(120 * fs_hz), fs_hz)
    backend = LinearBackend(SPEC, len(CLASSES))
    src = ReplaySource(x, fs_hz, SPEC.channels, chunk_samples=(1, 3000), seed=3)
    with src, StreamRunner(SPEC, backend, src, CLASSES, fs_hz=fs_hz, lossless=True) as run:
        preds = list(run)
        stats = run.stats
    wins, ref = _offline_probs(backend, x, fs_hz)
    assert len(preds) == len(wins) == stats.windows == stats.scored and stats.drops == 0
    for k, p in enumerate(preds):
        assert p.start_index == k * SPEC.stride_samples(fs_hz) and p.flags == ()
        assert np.array_equal(p.probs, ref[k])
        assert p.label == CLASSES[int(np.argmax(ref[k]))]
        assert p.t_end_s == pytest.approx((p.start_index + 1000) / fs_hz)
        assert set(p.latency_ms) >= {"dsp", "infer", "total"} and p.latency_ms["total"] >= p.latency_ms["infer"]
    assert len({p.label for p in preds}) > 1  # the check is not trivially one class
    assert np.isfinite(stats.latency_ms_p50) and stats.latency_ms_p99 >= stats.latency_ms_p50


def test_slow_inference_drops_oldest_windows() -> None:
    fs_hz = 125.0
    x = _recording(int(60 * fs_hz), fs_hz)
    backend = LinearBackend(SPEC, len(CLASSES), delay_s=0.01)
    src = ReplaySource(x, fs_hz, SPEC.channels, chunk_samples=500)  # unthrottled: far faster than inference
    with src, StreamRunner(SPEC, backend, src, CLASSES, queue_size=2) as run:
        preds = list(run)
        stats = run.stats
    wins, ref = _offline_probs(LinearBackend(SPEC, len(CLASSES)), x, fs_hz)
    assert stats.drops > 0 and stats.windows == len(wins) == len(preds) + stats.drops
    starts = [p.start_index for p in preds]
    assert starts == sorted(starts) and starts[-1] == (len(wins) - 1) * 125  # the newest window survives
    for p in preds:
        assert np.array_equal(p.probs, ref[p.start_index // 125])


def test_quality_flags() -> None:
    rng = np.random.default_rng(0)
    good = rng.standard_normal((2, 500)).astype(np.float32)
    assert window_flags(good) == ()
    flat = good.copy()
    flat[1] = 3.0
    assert window_flags(flat) == ("flat",)
    clipped = np.clip(good, -0.5, 0.5)
    assert window_flags(clipped) == ("saturated",)
    assert window_flags(good, config=QualityConfig(rails=(-1.0, 1.0))) == ("saturated",)
    assert window_flags(good, config=QualityConfig(rails=(-10.0, 10.0))) == ()
    nan = good.copy()
    nan[0, 7] = np.nan
    assert window_flags(nan, gap_samples=3) == ("nonfinite", "gap")


class _ListSource:
    """A source that hands out prepared chunks (to inject gaps and bad segments)."""

    def __init__(self, chunks: list[Chunk], fs_hz: float, channels: tuple[str, ...]) -> None:
        self.chunks, self.fs_hz, self.channels = list(chunks), fs_hz, channels
        self.finished, self.stats = False, SourceStats()

    def read(self, timeout_s: float = 0.1) -> Chunk | None:
        if not self.chunks:
            self.finished = True
            return None
        return self.chunks.pop(0)


def test_flagged_windows_are_not_scored() -> None:
    fs_hz = 125.0
    x = _recording(int(40 * fs_hz), fs_hz)
    x[1, 1000:1700] = 0.25  # electrode off: flat for 5.6 s
    x[2, 3000:3600] = np.clip(x[2, 3000:3600], -0.2, 0.2)  # amplifier clipping
    keep = np.ones(x.shape[1], bool)
    keep[4200:4210] = False  # 10 lost samples
    chunks = [Chunk.from_counter(x[:, a:b], fs_hz, SPEC.channels, a) for a, b in
              [(0, 2000), (2000, 4200), (4210, x.shape[1])]]
    backend = LinearBackend(SPEC, len(CLASSES))
    src = _ListSource(chunks, fs_hz, SPEC.channels)
    with StreamRunner(SPEC, backend, src, CLASSES, lossless=True) as run:
        preds = list(run)
        stats = run.stats
    w, s = 500, 125
    assert len(preds) == (x.shape[1] - w) // s + 1
    for p in preds:
        a, b = p.start_index, p.start_index + w
        expect_flat = a >= 1000 and b <= 1700  # a partly flat channel still varies
        expect_gap = a < 4210 and b > 4200
        assert ("flat" in p.flags) == expect_flat, (a, p.flags)
        assert ("gap" in p.flags) == expect_gap and ("nonfinite" in p.flags) == expect_gap
        assert p.scored == (p.flags == ())
        assert (p.probs is None) == bool(p.flags)
    assert any("saturated" in p.flags for p in preds if p.start_index >= 3000 and p.start_index + w <= 3600)
    assert backend.calls == 1 + stats.scored  # one dry run at construction, then scored windows only
    assert stats.flagged == sum(not p.scored for p in preds) > 0 and stats.gaps == 1


def test_mismatch_raises_at_construction() -> None:
    x = _recording(1000, 125.0)
    backend = LinearBackend(SPEC, len(CLASSES))
    with pytest.raises(SpecError, match="2 channel"):
        StreamRunner(SPEC, backend, ReplaySource(x[:2], 125.0), CLASSES)
    with pytest.raises(SpecError, match="250.0 Hz was expected"):
        StreamRunner(SPEC, backend, ReplaySource(x, 125.0), CLASSES, fs_hz=250.0)
    with pytest.raises(SpecError, match="class names"):
        StreamRunner(SPEC, backend, ReplaySource(x, 125.0), CLASSES[:2])
    with pytest.raises(SpecError):  # a 4 s window is not a whole number of samples at 100.3 Hz
        StreamRunner(SPEC, backend, ReplaySource(x, 100.3), CLASSES)


def test_stop_is_idempotent_thread_safe_and_works_from_a_signal_handler() -> None:
    spec = SPEC.replace(window_s=0.4, stride_s=0.2)
    x = _recording(2000, 125.0)
    src = ReplaySource(x, 125.0, SPEC.channels, chunk_samples=25, realtime=True, loop=True)
    run = StreamRunner(spec, LinearBackend(spec, len(CLASSES)), src, CLASSES)
    old = signal.signal(signal.SIGINT, lambda *a: run.stop())
    try:
        timer = threading.Timer(0.8, os.kill, args=(os.getpid(), signal.SIGINT))
        t0 = time.monotonic()
        with src, run:
            timer.start()
            preds = list(run)
        assert time.monotonic() - t0 < 3.0
        assert 2 <= len(preds) <= 6 and all(p.scored for p in preds)
        stoppers = [threading.Thread(target=run.stop) for _ in range(4)]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(2.0)
        run.stop()
        assert not any(t.is_alive() for t in stoppers) and list(run) == []
    finally:
        signal.signal(signal.SIGINT, old)


def test_sinks_write_and_flush(tmp_path) -> None:
    fs_hz = 125.0
    x = _recording(int(12 * fs_hz), fs_hz)
    x[0, :600] = 1.0  # the first windows are flat
    backend = LinearBackend(SPEC, len(CLASSES))
    got = []
    src = ReplaySource(x, fs_hz, SPEC.channels)
    with open_sink(f"jsonl:{tmp_path / 'p.jsonl'}") as js, \
            open_sink(f"csv:{tmp_path / 'p.csv'}", class_names=CLASSES) as cs, CallbackSink(got.append) as cb, \
            StreamRunner(SPEC, backend, src, CLASSES, lossless=True) as run:
        for p in run:
            for sink in (js, cs, cb):
                sink(p)
    lines = [json.loads(s) for s in (tmp_path / "p.jsonl").read_text().splitlines()]
    with open(tmp_path / "p.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(lines) == len(rows) == len(got) == 9
    for d, r, p in zip(lines, rows, got, strict=True):
        assert d["start_index"] == int(r["start_index"]) == p.start_index
        assert d["label"] == p.label and r["label"] == (p.label or "") and d["flags"] == list(p.flags)
        if p.scored:
            np.testing.assert_allclose(d["probs"], p.probs, rtol=1e-6)
            np.testing.assert_allclose([float(r[f"p_{c}"]) for c in CLASSES], p.probs, rtol=1e-5)
    assert lines[0]["flags"] == ["flat"] and lines[-1]["flags"] == []
    with pytest.raises(KeyError, match="did you mean 'jsonl'"):
        open_sink("jsnl:-")
