"""Streaming windows equal offline windows: ReplaySource → Windower (RingBuffer) → Preprocessor vs cut_windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebridge.devices.base import Chunk
from edgebridge.devices.replay import ReplaySource
from edgebridge.preprocess import Preprocessor
from edgebridge.runtime.buffer import RingBuffer, Windower
from edgebridge.spec import SignalSpec
from edgebridge.windowing import cut_windows

CHANNELS = ("a", "b", "c")


def _recording(n_channels: int, n_samples: int, fs_hz: float, seed: int = 0) -> np.ndarray:
    """Multi-channel test signal: a different sine mix per channel plus noise and a slow drift."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / fs_hz
    rows = [np.sin(2 * np.pi * (1.1 + c) * t) + 0.3 * np.sin(2 * np.pi * 7.3 * (c + 1) * t) + 0.01 * c * t
            for c in range(n_channels)]
    return (np.stack(rows) + 0.2 * rng.standard_normal((n_channels, n_samples))).astype(np.float32)


def _stream(src: ReplaySource, windower: Windower) -> list:
    out = []
    with src:
        while (chunk := src.read(0.0)) is not None:
            out.extend(windower.push(chunk))
    return out


@pytest.mark.parametrize("device_fs_hz", [250.0, 500.0], ids=["same-fs", "device-fs-differs"])
def test_stream_windows_equal_offline(device_fs_hz: float) -> None:
    spec = SignalSpec("ecg", 250.0, CHANNELS, window_s=8.0, stride_s=2.0, bandpass_hz=(0.5, 40.0))
    minutes = 10 if device_fs_hz == 250.0 else 3
    x = _recording(3, int(minutes * 60 * device_fs_hz), device_fs_hz)
    w_n, s_n = spec.window_samples(device_fs_hz), spec.stride_samples(device_fs_hz)
    pre = Preprocessor(spec, device_fs_hz)
    src = ReplaySource(x, device_fs_hz, CHANNELS, chunk_samples=(1, 3 * w_n), seed=7)
    live = _stream(src, Windower(spec, device_fs_hz))
    offline = cut_windows(x, w_n, s_n)
    assert len(live) == len(offline) == (x.shape[1] - w_n) // s_n + 1
    assert src.stats.chunks > 10
    for k, (win, t_end_s, start) in enumerate(live):
        assert start == k * s_n
        assert t_end_s == pytest.approx((start + w_n) / device_fs_hz)
        assert np.array_equal(win, offline[k])
        assert np.array_equal(pre(win), pre(offline[k]))
    assert pre(live[0].data).shape == spec.input_shape


@settings(max_examples=25, deadline=None, derandomize=True)
@given(n_samples=st.integers(1, 700), window_n=st.integers(1, 60), stride_n=st.integers(1, 90),
       max_chunk=st.integers(1, 200), seed=st.integers(0, 2**16), extra_cap=st.integers(1, 50))
def test_windower_matches_cut_windows_property(n_samples: int, window_n: int, stride_n: int, max_chunk: int,
                                               seed: int, extra_cap: int) -> None:
    fs_hz = 10.0
    spec = SignalSpec("ppg", fs_hz, ("x", "y"), window_s=window_n / fs_hz, stride_s=stride_n / fs_hz)
    x = _recording(2, n_samples, fs_hz, seed)
    windower = Windower(spec, fs_hz, capacity_samples=window_n + extra_cap)
    live = _stream(ReplaySource(x, fs_hz, ("x", "y"), chunk_samples=(1, max_chunk), seed=seed), windower)
    offline = cut_windows(x, window_n, stride_n)
    assert len(live) == len(offline)
    assert all(np.array_equal(w.data, o) for w, o in zip(live, offline, strict=True))
    assert windower.skipped == 0


def test_ring_buffer_wraps_and_rejects_overwritten() -> None:
    ring = RingBuffer(2, 10)
    x = np.arange(2 * 37, dtype=np.float32).reshape(2, 37)
    for a, b in [(0, 3), (3, 12), (12, 13), (13, 37)]:
        ring.push(x[:, a:b])
    assert ring.total == 37 and ring.oldest == 27
    assert np.array_equal(ring.read(27, 10), x[:, 27:37])
    assert np.array_equal(ring.read(30, 4), x[:, 30:34])
    with pytest.raises(IndexError):
        ring.read(26, 3)
    with pytest.raises(IndexError):
        ring.read(35, 3)
    ring.push(x[:, :25])  # larger than the ring: only the newest 10 survive
    assert np.array_equal(ring.read(ring.total - 10, 10), x[:, 15:25])


def test_counter_gap_is_nan_filled_and_positions_kept() -> None:
    fs_hz = 100.0
    spec = SignalSpec("ppg", fs_hz, ("x",), window_s=0.5, stride_s=0.25)
    x = _recording(1, 400, fs_hz)
    windower = Windower(spec, fs_hz)
    lost = slice(120, 137)
    live = []
    for a in range(0, 400, 30):
        b = min(a + 30, 400)
        keep = np.ones(b - a, bool)
        keep[max(lost.start - a, 0):max(lost.stop - a, 0)] = False
        # send the samples before and after the lost span as separate chunks with their true counters
        for part in np.split(np.arange(a, b), np.flatnonzero(np.diff(keep.astype(int))) + 1):
            if keep[part[0] - a]:
                live.extend(windower.push(Chunk.from_counter(x[:, part], fs_hz, ("x",), 1000 + int(part[0]))))
    ref = x.copy()
    ref[:, lost] = np.nan
    offline = cut_windows(ref, 50, 25)
    assert len(live) == len(offline)
    assert windower.gaps == 1 and windower.lost_samples == lost.stop - lost.start
    for w, o in zip(live, offline, strict=True):
        assert np.array_equal(w.data, o, equal_nan=True)
        expected_gap = max(0, min(w.start_index + 50, lost.stop) - max(w.start_index, lost.start))
        assert w.gap_samples == expected_gap
        assert w.t_end_s == pytest.approx((1000 + w.start_index + 50) / fs_hz)


def test_replay_file_roundtrip(tmp_path) -> None:
    x = _recording(2, 500, 50.0)
    np.savez(tmp_path / "r.npz", data=x, fs_hz=50.0, channels=np.array(["p", "q"]))
    t = np.arange(500) / 50.0
    np.savetxt(tmp_path / "r.csv", np.column_stack([t, x.T]), delimiter=",", header="time_s,p,q", comments="",
               fmt="%.9g")
    for name in ("r.npz", "r.csv"):
        src = ReplaySource.from_file(tmp_path / name, chunk_samples=64)
        assert src.fs_hz == 50.0 and src.channels == ("p", "q")
        with src:
            chunks = []
            while (c := src.read(0.0)) is not None:
                chunks.append(c)
        got = np.concatenate([c.data for c in chunks], axis=1)
        np.testing.assert_allclose(got, x, rtol=1e-6, atol=1e-6)
        assert [c.counter for c in chunks] == list(range(0, 500, 64))


def test_replay_realtime_paces_by_wall_clock() -> None:
    import time

    src = ReplaySource(np.zeros((1, 50), np.float32), 500.0, chunk_samples=10, realtime=True)
    t0 = time.monotonic()
    with src:
        n = 0
        while not src.finished:
            c = src.read(0.05)
            n += 0 if c is None else c.n_samples
    assert n == 50
    assert time.monotonic() - t0 == pytest.approx(0.1, abs=0.05)
