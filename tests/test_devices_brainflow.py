"""BrainFlowSource against BrainFlow's synthetic board (plumbing) and playback board (realistic ECG from a file)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("brainflow.board_shim", reason="brainflow is not installed (pip install 'edgebridge[stream]')")
from brainflow.board_shim import BoardShim, BrainFlowPresets  # noqa: E402
from brainflow.data_filter import DataFilter  # noqa: E402

from edgebridge.devices.base import open_source  # noqa: E402
from edgebridge.devices.brainflow import BrainFlowSource, resolve_board  # noqa: E402

BoardShim.disable_board_logger()


def _collect(src, n_min: int, timeout_s: float) -> list:
    chunks, deadline = [], time.monotonic() + timeout_s
    while sum(c.n_samples for c in chunks) < n_min and time.monotonic() < deadline:
        c = src.read(0.1)
        if c is not None:
            chunks.append(c)
    return chunks


def test_synthetic_board_rows_rate_and_counters() -> None:
    src = open_source("brainflow:synthetic", modality="ecg", rows=[0, 1])
    assert src.fs_hz == 250.0 and src.channels == ("ecg0", "ecg1")
    assert src.rows == BoardShim.get_ecg_channels(-1)[:2] == [1, 2]
    t0 = time.monotonic()
    with src:
        chunks = _collect(src, 250, 3.0)
    elapsed = time.monotonic() - t0
    n = sum(c.n_samples for c in chunks)
    assert 250 <= n <= 1.5 * 250 * elapsed  # the board produces ~250 samples/s
    counters = np.concatenate([c.counter + np.arange(c.n_samples) for c in chunks])
    assert np.array_equal(counters, np.arange(n)) and src.stats.gaps == 0  # wrapped at 256 without a gap
    x = np.concatenate([c.data for c in chunks], axis=1)[:, :250]
    assert x.shape == (2, 250) and x.dtype == np.float32
    for row, f_hz in ((0, 5.0), (1, 10.0)):  # synthetic EXG channel k is a sine at 5·k Hz
        spec = np.abs(np.fft.rfft(x[row] - x[row].mean()))
        assert np.fft.rfftfreq(250, 1 / 250)[np.argmax(spec)] == pytest.approx(f_hz, abs=1.0)
    np.testing.assert_allclose(chunks[0].t_s, np.arange(chunks[0].n_samples) / 250.0)


def test_modality_rows_and_errors() -> None:
    ppg = BrainFlowSource("synthetic", modality="ppg")
    assert ppg.rows == BoardShim.get_ppg_channels(-1, BrainFlowPresets.DEFAULT_PRESET) == [24, 25]
    assert resolve_board("SYNTHETIC_BOARD") == resolve_board(-1) == resolve_board("-1") == -1
    assert resolve_board("playback_file") == -3
    with pytest.raises(KeyError, match="did you mean"):
        resolve_board("synthetc")
    with pytest.raises(KeyError, match="unknown modality"):
        BrainFlowSource("synthetic", modality="ekg")


def _ecg(n: int, fs_hz: float, seed: int = 3) -> np.ndarray:
    """ECG in mV: P-QRS-T Gaussian waves per beat (~72 bpm with beat-to-beat variability), wander and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs_hz
    beats = np.cumsum(0.83 + 0.03 * rng.standard_normal(int(n / fs_hz / 0.6) + 2)) - 0.5
    waves = [(-0.22, 0.12, 0.025), (-0.035, -0.12, 0.010), (0.0, 1.1, 0.011), (0.035, -0.3, 0.012),
             (0.30, 0.3, 0.045)]  # (offset from R in s, amplitude mV, width s): P, Q, R, S, T
    x = sum(a * np.exp(-0.5 * ((t[:, None] - beats[None, :] - dt) / w) ** 2).sum(axis=1) for dt, a, w in waves)
    return x + 0.05 * np.sin(2 * np.pi * 0.25 * t) + 0.01 * rng.standard_normal(n)


def test_playback_board_delivers_file_ecg(tmp_path) -> None:
    fs_hz, n = 500, 1000  # the playback board paces rows by the file's timestamps: 2 s at 500 Hz
    ecg = _ecg(n, fs_hz)
    assert 1 <= np.sum((ecg[1:-1] > 0.6) & (ecg[1:-1] >= ecg[:-2]) & (ecg[1:-1] > ecg[2:])) <= 3  # R peaks in 2 s
    data = np.zeros((BoardShim.get_num_rows(-1), n))
    data[0] = np.arange(n) % 256  # package counter
    for k, row in enumerate(BoardShim.get_ecg_channels(-1)):
        data[row] = 1000.0 * ecg * (1 + 0.1 * k)  # µV, a different gain per lead
    data[BoardShim.get_timestamp_channel(-1)] = 1.7e9 + np.arange(n) / fs_hz
    path = tmp_path / "ecg_playback.csv"
    DataFilter.write_file(data, str(path), "w")
    src = BrainFlowSource("playback_file", modality="ecg", rows=[0, 3], fs_hz=fs_hz, file=str(path),
                          master_board="synthetic")
    with src:
        chunks = _collect(src, n, 6.0)
    got = np.concatenate([c.data for c in chunks], axis=1)
    assert got.shape == (2, n) and src.stats.gaps == 0
    np.testing.assert_allclose(got, data[[1, 4]], rtol=1e-5, atol=1e-2)
    assert np.concatenate([c.t_s for c in chunks]) == pytest.approx(np.arange(n) / fs_hz)


def test_missing_brainflow_names_the_extra(monkeypatch) -> None:
    from edgebridge.devices.base import SourceError

    for name in ("brainflow", "brainflow.board_shim"):
        monkeypatch.setitem(__import__("sys").modules, name, None)
    with pytest.raises(SourceError, match=r"pip install 'edgebridge\[stream\]'"):
        BrainFlowSource("synthetic")
