"""Generic loader: EDF/CSV/NPZ + YAML; the real BIDMC recording read as paired PPG + ECG, time-aligned per window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures_data import write_edf
from scipy.signal import find_peaks

from edgebridge.data.generic import DataError
from edgebridge.data.prepare import prepare_dataset
from edgebridge.data.prepared import PreparedWindows
from edgebridge.data.recordings import get_loader
from edgebridge.spec import SignalSpec

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
BIDMC = REAL / "bidmc_01_Signals.csv"


def _yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def r_to_pulse_lag_s(ecg: np.ndarray, ppg: np.ndarray, fs_hz: float) -> float:
    """Lag (s) maximising the cross-correlation of smoothed R-peak and pulse-peak trains, searched in 0.2–1.1 s."""
    r, _ = find_peaks(ecg, distance=int(0.4 * fs_hz), prominence=0.25 * np.ptp(ecg))
    q, _ = find_peaks(ppg, distance=int(0.4 * fs_hz), prominence=0.15 * np.ptp(ppg))
    n = ecg.size
    kernel = np.exp(-0.5 * (np.arange(-10, 11) / 2.5) ** 2)
    trains = []
    for idx in (r, q):
        t = np.zeros(n)
        t[idx] = 1.0
        trains.append(np.convolve(t, kernel, "same"))
    lags = np.arange(int(0.2 * fs_hz), int(1.1 * fs_hz))
    corr = [float(np.dot(trains[0][: n - lag], trains[1][lag:])) for lag in lags]
    return float(lags[int(np.argmax(corr))] / fs_hz)


@pytest.fixture(scope="module")
def bidmc_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BIDMC.is_file():
        pytest.skip(f"real recordings not present at {REAL} (shared data folder beside the repo)")
    tmp = tmp_path_factory.mktemp("bidmc")
    cfg = _yaml(tmp / "edgebridge.yaml", {
        "files": BIDMC.name, "subject": r"^(bidmc_\d+)", "fs_hz": 125, "time_column": "Time [s]",
        "modalities": {"ppg": ["PLETH"], "ecg": ["II"]}, "pair": ["ppg", "ecg"], "window_s": 10, "stride_s": 10,
        "splits": {"pair": 1.0}})
    return prepare_dataset("generic", REAL, tmp / "out", config=str(cfg), keep_unlabelled=True)


def test_bidmc_windows_are_exact_slices_of_the_csv(bidmc_prepared: Path) -> None:
    table = np.loadtxt(BIDMC, delimiter=",", skiprows=1)
    spec_ppg = SignalSpec("ppg", 125.0, ("PLETH",), 10.0, 10.0, norm="none")
    spec_ecg = SignalSpec("ecg", 125.0, ("II",), 10.0, 10.0, norm="none")
    pw = PreparedWindows(bidmc_prepared, "pair", spec_ppg, spec_ecg)
    assert len(pw) == table.shape[0] // 1250  # 480 s → 48 complete 10-s windows
    for i in (0, 17, len(pw) - 1):
        a = int(round(pw.start_s[i] * 125))
        np.testing.assert_allclose(pw.raw_new(i)[0], table[a:a + 1250, 2], rtol=0, atol=1e-6)
        np.testing.assert_allclose(pw.raw_old(i)[0], table[a:a + 1250, 5], rtol=0, atol=1e-6)


def test_bidmc_r_to_pulse_delay_in_every_window(bidmc_prepared: Path) -> None:
    spec_ppg = SignalSpec("ppg", 125.0, ("PLETH",), 10.0, 10.0, norm="none")
    spec_ecg = SignalSpec("ecg", 125.0, ("II",), 10.0, 10.0, norm="none")
    pw = PreparedWindows(bidmc_prepared, "pair", spec_ppg, spec_ecg)
    lags = np.array([r_to_pulse_lag_s(pw.raw_old(i)[0], pw.raw_new(i)[0], 125.0) for i in range(len(pw))])
    assert len(lags) == 48
    assert np.all(np.abs(lags - 0.64) <= 0.05), lags
    # negative control: pairing ECG with a PPG window shifted by 0.2 s is detected by the same measure
    shifted = np.array([r_to_pulse_lag_s(pw.raw_old(i)[0][:-25], pw.raw_new(i)[0][25:], 125.0) for i in range(5)])
    assert np.all(np.abs(shifted - 0.64) > 0.1), shifted


def test_csv_rate_mismatch_and_missing_column(tmp_path: Path) -> None:
    t = np.arange(500) / 100.0  # file really at 100 Hz
    np.savetxt(tmp_path / "a.csv", np.c_[t, np.sin(t), np.cos(t)], delimiter=",", header="t,p,e", comments="")
    cfg = {"time_column": "t", "fs_hz": 125, "modalities": {"ppg": ["p"], "ecg": ["e"]}, "window_s": 2}
    _yaml(tmp_path / "edgebridge.yaml", cfg)
    with pytest.raises(DataError, match="declared 125"):
        list(get_loader("generic")(tmp_path))
    _yaml(tmp_path / "edgebridge.yaml", {**cfg, "fs_hz": 100, "modalities": {"ppg": ["p"], "ecg": ["nope"]}})
    with pytest.raises(DataError, match="nope"):
        list(get_loader("generic")(tmp_path))


def test_npz_edf_and_label_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ppg, ecg = rng.normal(size=6400), rng.normal(size=25600)  # 100 s at 64 Hz and 256 Hz
    np.savez(tmp_path / "s01_a.npz", PPG=ppg, fs_hz=64.0)
    write_edf(tmp_path / "s01_b.edf", [("PPG", ppg, 64.0, "au"), ("ECG", ecg, 256.0, "uV")], record_s=1.0)
    np.savetxt(tmp_path / "s01_a_labels.txt", np.repeat([0, 1], 50), fmt="%d")
    np.savetxt(tmp_path / "s01_b_labels.txt", np.repeat([1, 0], 40), fmt="%d")  # only 80 s: shorter than signal
    _yaml(tmp_path / "edgebridge.yaml", {"files": "s01_b.edf", "subject": r"^(s\d+)", "window_s": 10,
                                         "modalities": {"ppg": ["PPG"], "ecg": ["ECG"]},
                                         "labels": {"file": "{stem}_labels.txt", "fs_hz": 1,
                                                    "class_names": ["a", "b"]}})
    with pytest.raises(DataError, match="labels cover 80.0 s but the signals last 100.0 s"):
        list(get_loader("generic")(tmp_path))
    cfg = yaml.safe_load((tmp_path / "edgebridge.yaml").read_text())
    cfg["labels"]["allow_short"] = True
    _yaml(tmp_path / "edgebridge.yaml", cfg)
    (rec,) = list(get_loader("generic")(tmp_path))
    assert rec.subject == "s01" and rec.signal("ecg").fs_hz == 256.0
    # EDF stores 16-bit integers: physical values are exact to one quantisation step
    step = np.ptp(ecg) / 65535
    assert np.max(np.abs(rec.signal("ecg").data[0] - ecg)) <= step
    assert rec.labels.window_label(85, 10) == -1 and rec.labels.window_label(0, 10) == 1
    _yaml(tmp_path / "edgebridge.yaml", {"files": "*.npz", "window_s": 10, "modalities": {"ppg": ["PPG"]},
                                         "labels": {"file": "{stem}_labels.txt", "fs_hz": 1}})
    (rec,) = list(get_loader("generic")(tmp_path))
    assert rec.subject == "s01_a" and rec.signal("ppg").fs_hz == 64.0
    np.testing.assert_array_equal(rec.labels.codes, np.repeat([0, 1], 50))
