"""The synthetic paired data set: determinism, layout, beat-synchronous ECG/PPG, physiology, difficulty.

Peaks, heart rates, amplitudes and band powers are measured from the rendered signals with SciPy and compared
with the generator's ground truth in ``Recording.meta`` (an independent path through the data).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import signal as sig

from edgebridge.data.recordings import UNLABELLED, Recording, get_loader
from edgebridge.data.synthetic import EEG_CHANNELS, SyntheticConfig, make_dataset, make_subject
from edgebridge.windowing import window_starts

SMALL = SyntheticConfig(n_subjects=3, minutes_per_condition=0.5)


def _r_peaks(rec: Recording) -> np.ndarray:
    """R-peak times (s): ECG minus a 0.2-s moving average, then find_peaks with a refractory distance."""
    s = rec.signal("ecg")
    x = s.data[0].astype(np.float64)
    k = int(0.2 * s.fs_hz)
    x = x - np.convolve(x, np.ones(k) / k, mode="same")
    pk, _ = sig.find_peaks(x, distance=int(0.33 * s.fs_hz), height=0.5 * np.percentile(x, 99.5))
    return pk / s.fs_hz


def _ppg_peaks(rec: Recording, skip_artefacts: bool = False) -> np.ndarray:
    """Systolic peak times (s): beats found on a 0.5-3 Hz band-passed copy (one hump per beat, diastolic waves
    merged), each then moved to the raw PPG's maximum within ±0.15 s.

    ``skip_artefacts`` drops peaks within 0.5 s of a motion burst, as an accelerometer-gated pipeline would.
    """
    s = rec.signal("ppg")
    x = s.data[0].astype(np.float64)
    smooth = sig.sosfiltfilt(sig.butter(2, (0.5, 3.0), btype="bandpass", fs=s.fs_hz, output="sos"), x)
    pk, props = sig.find_peaks(smooth, distance=int(0.33 * s.fs_hz), prominence=0)
    pk = pk[props["prominences"] > 0.3 * np.median(props["prominences"])]
    half = int(0.15 * s.fs_hz)
    refined = [i - half + int(np.argmax(x[i - half:i + half + 1])) for i in pk if half <= i < x.size - half]
    t = np.unique(refined) / s.fs_hz
    if skip_artefacts:
        for a, b in rec.meta["ppg_artifacts_s"]:
            t = t[(t < a - 0.5) | (t > b + 0.5)]
    return t


def _segment(times: np.ndarray, seg: dict) -> np.ndarray:
    return times[(times >= seg["start_s"]) & (times < seg["end_s"])]


def _robust_hr_bpm(peaks_s: np.ndarray) -> float:
    """Mean HR from RR intervals within ±30 % of the median (drops artefact peaks and missed beats)."""
    rr = np.diff(peaks_s)
    rr = rr[np.abs(rr - np.median(rr)) < 0.3 * np.median(rr)]
    return 60.0 / rr.mean()


def _rmssd_ms(peaks_s: np.ndarray) -> float:
    return 1000.0 * float(np.sqrt(np.mean(np.diff(np.diff(peaks_s)) ** 2)))


def _pulse_amplitude(x: np.ndarray, fs_hz: float, peaks_s: np.ndarray) -> float:
    """Median over beats of systolic peak minus the lowest sample in the 0.3 s before it (robust to artefacts)."""
    idx = np.round(peaks_s * fs_hz).astype(int)
    before = int(0.3 * fs_hz)
    return float(np.median([x[i] - x[i - before:i].min() for i in idx if before <= i < x.size]))


def _band_power(x: np.ndarray, fs_hz: float, lo_hz: float, hi_hz: float) -> float:
    f, p = sig.welch(x, fs=fs_hz, nperseg=int(4 * fs_hz))
    return float(p[(f >= lo_hz) & (f < hi_hz)].sum())


def _arrays(rec: Recording) -> list[np.ndarray]:
    return [s.data for s in rec.signals.values()] + [rec.labels.codes, rec.meta["r_peaks_s"], rec.meta["ptt_s"]]


def test_same_seed_same_bits_other_seed_differs() -> None:
    a, b = make_dataset(SMALL), make_dataset(SMALL)
    c = make_dataset(SyntheticConfig(n_subjects=3, minutes_per_condition=0.5, seed=1))
    for ra, rb, rc in zip(a, b, c, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(_arrays(ra), _arrays(rb), strict=True))
        assert not np.array_equal(ra.signal("ecg").data, rc.signal("ecg").data)
        assert not np.array_equal(ra.meta["r_peaks_s"][:50], rc.meta["r_peaks_s"][:50])


def test_subject_depends_only_on_seed_and_index() -> None:
    few = make_dataset(SyntheticConfig(n_subjects=2, minutes_per_condition=0.5))
    many = make_dataset(SyntheticConfig(n_subjects=5, minutes_per_condition=0.5, include_emg=True))
    assert [r.subject for r in many] == ["S01", "S02", "S03", "S04", "S05"]
    for r_few, r_many in zip(few, many[:2], strict=False):
        assert r_few.subject == r_many.subject
        for m in ("ecg", "ppg"):  # switching EMG on leaves the beat train and the other sensors alone
            assert np.array_equal(r_few.signal(m).data, r_many.signal(m).data)
        assert np.array_equal(r_few.meta["r_peaks_s"], r_many.meta["r_peaks_s"])
    assert not np.array_equal(many[0].meta["r_peaks_s"][:50], many[1].meta["r_peaks_s"][:50])


def test_shapes_rates_channels_and_labels() -> None:
    cfg = SyntheticConfig(n_subjects=2, minutes_per_condition=0.5, include_emg=True, include_eeg=True,
                          fs_ppg_hz=32.0)
    total_s = 3 * 30.0 + 2 * cfg.transition_s
    expect = {"ecg": (250.0, ("ecg",)), "ppg": (32.0, ("ppg",)), "emg": (500.0, ("emg",)), "eeg": (128.0, EEG_CHANNELS)}
    for rec in make_dataset(cfg):
        assert set(rec.signals) == set(expect)
        for m, (fs_hz, channels) in expect.items():
            s = rec.signal(m)
            assert s.fs_hz == fs_hz and s.channels == channels
            assert s.data.shape == (len(channels), round(total_s * fs_hz)) and s.data.dtype == np.float32
            assert np.isfinite(s.data).all() and s.data.std(axis=1).min() > 0
        lab = rec.labels
        assert lab.fs_hz == 250.0 and lab.codes.size == rec.signal("ecg").data.shape[1]
        assert lab.class_names == cfg.conditions
        assert sorted(rec.meta["condition_order"]) == sorted(cfg.conditions)
        for seg in rec.meta["segments"]:
            a, b = round(seg["start_s"] * 250), round(seg["end_s"] * 250)
            assert b - a == 30 * 250 and np.all(lab.codes[a:b] == cfg.conditions.index(seg["condition"]))
        assert np.sum(lab.codes == UNLABELLED) == 2 * 10 * 250  # the two 10-s transitions, nothing else
        gap_s = rec.meta["segments"][0]["end_s"]
        assert lab.window_label(gap_s - 5.0, 10.0) == UNLABELLED  # a window straddling a transition
        assert lab.window_label(0.0, 10.0) == cfg.conditions.index(rec.meta["condition_order"][0])


def test_default_size_is_fast_finite_float32() -> None:
    t0 = time.perf_counter()
    recs = make_dataset(SyntheticConfig())  # 24 subjects × 3 conditions × 3 min
    elapsed_s = time.perf_counter() - t0
    assert elapsed_s < 15.0, f"default data set took {elapsed_s:.1f} s"
    assert [r.subject for r in recs] == [f"S{k:02d}" for k in range(1, 25)]
    assert all(s.data.dtype == np.float32 and np.isfinite(s.data).all() for r in recs for s in r.signals.values())
    assert len({r.meta["condition_order"] for r in recs}) > 1  # orders are shuffled per subject


def test_loader_registry_and_config_validation() -> None:
    via_loader = list(get_loader("synthetic")(None, n_subjects=2, minutes_per_condition=0.2, seed=3))
    direct = make_dataset(SyntheticConfig(n_subjects=2, minutes_per_condition=0.2, seed=3))
    assert [r.subject for r in via_loader] == ["S01", "S02"]
    assert all(np.array_equal(a.signal("ppg").data, b.signal("ppg").data) for a, b in zip(via_loader, direct,
                                                                                          strict=True))
    with pytest.raises(KeyError, match="did you mean 'stress'"):
        SyntheticConfig(conditions=("baseline", "stres"))
    with pytest.raises(ValueError):
        SyntheticConfig(n_subjects=0)
    with pytest.raises(ValueError):
        SyntheticConfig(conditions=("baseline", "baseline"))


def test_noise_level_scales_only_the_artefacts() -> None:
    base = dict(n_subjects=1, minutes_per_condition=0.3)
    x0, x1, x2 = (make_subject(SyntheticConfig(noise_level=nl, **base), 0) for nl in (0.0, 1.0, 2.0))
    assert np.array_equal(x0.meta["r_peaks_s"], x2.meta["r_peaks_s"])
    for m in ("ecg", "ppg"):
        n1 = x1.signal(m).data.astype(np.float64) - x0.signal(m).data
        n2 = x2.signal(m).data.astype(np.float64) - x0.signal(m).data
        assert np.abs(n1).max() > 0.01
        np.testing.assert_allclose(n2, 2 * n1, atol=1e-5)


@pytest.mark.parametrize("noise_level, tol_s, min_frac", [(0.0, 0.025, 0.99), (1.0, 0.050, 0.90)])
def test_ecg_and_ppg_are_beat_synchronous(noise_level: float, tol_s: float, min_frac: float) -> None:
    for rec in make_dataset(SyntheticConfig(n_subjects=3, minutes_per_condition=1.0, noise_level=noise_level)):
        truth = rec.meta["r_peaks_s"]
        np.testing.assert_allclose(rec.meta["ppg_peak_s"] - truth, rec.meta["ptt_s"] + rec.meta["ppg_rise_s"])
        r = _r_peaks(rec)
        assert r.size == truth.size and np.abs(r - truth).max() < 0.006  # every beat found, within ~1 sample
        ppg = _ppg_peaks(rec)
        nxt = ppg[np.searchsorted(ppg, r).clip(max=ppg.size - 1)]  # first PPG peak after each R-peak
        err = (nxt - r) - (rec.meta["ptt_s"] + rec.meta["ppg_rise_s"])
        assert np.mean(np.abs(err) < tol_s) >= min_frac
        assert abs(np.median(err)) < 0.012
        clean_ppg = _ppg_peaks(rec, skip_artefacts=True)
        for seg in rec.meta["segments"]:
            assert abs(_robust_hr_bpm(_segment(r, seg)) - _robust_hr_bpm(_segment(clean_ppg, seg))) < 1.0


def _segment_measures(rec: Recording) -> dict[str, dict[str, float]]:
    """Per condition, measured from the signals: HR, RMSSD, R→PPG-peak delay, pulse amplitude, EMG RMS, alpha."""
    r, ppg_peaks, ppg = _r_peaks(rec), _ppg_peaks(rec, skip_artefacts=True), rec.signal("ppg")
    out = {}
    for seg in rec.meta["segments"]:
        beats = _segment(r, seg)
        delay = ppg_peaks[np.searchsorted(ppg_peaks, beats).clip(max=ppg_peaks.size - 1)] - beats
        a, b = seg["start_s"], seg["end_s"]
        emg = rec.signal("emg").data[0, round(a * 500):round(b * 500)].astype(np.float64)
        o1 = rec.signal("eeg").select(("O1",))[0, round(a * 128):round(b * 128)].astype(np.float64)
        out[seg["condition"]] = {
            "hr": _robust_hr_bpm(beats), "rmssd": _rmssd_ms(beats), "delay": float(np.median(delay)),
            "pulse": _pulse_amplitude(ppg.data[0], ppg.fs_hz, _segment(ppg_peaks, seg)),
            "emg_rms": float(np.sqrt(np.mean(emg ** 2))),
            "alpha": _band_power(o1, 128.0, 8.0, 13.0) / _band_power(o1, 128.0, 1.0, 30.0),
        }
    return out


def test_conditions_move_physiology_in_the_designed_direction() -> None:
    cfg = SyntheticConfig(n_subjects=8, minutes_per_condition=1.0, include_emg=True, include_eeg=True, seed=7)
    ms = [_segment_measures(rec) for rec in make_dataset(cfg)]

    def ratio(cond: str, key: str) -> np.ndarray:
        return np.array([m[cond][key] / m["baseline"][key] for m in ms])

    def delta(cond: str, key: str) -> np.ndarray:
        return np.array([m[cond][key] - m["baseline"][key] for m in ms])

    # stress: a strong effect, in every subject
    assert delta("stress", "hr").min() > 8.0
    assert ratio("stress", "rmssd").max() < 0.8
    assert delta("stress", "delay").max() < -0.010  # shorter PTT, measured as R-peak → PPG-peak delay
    assert ratio("stress", "pulse").max() < 1.0  # vasoconstriction
    assert ratio("stress", "emg_rms").min() > 1.3
    assert ratio("stress", "alpha").max() < 1.0
    # amusement: a milder effect that overlaps baseline in some subjects (by design)
    assert delta("amusement", "hr").mean() > 4.0 and np.mean(delta("amusement", "hr") > 0) >= 0.8
    assert ratio("amusement", "rmssd").mean() > 1.0
    assert ratio("amusement", "pulse").mean() < 1.0


def _window_features(rec: Recording, window_s: float = 10.0, stride_s: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-window mean HR, log RMSSD and a respiration-band power ratio of the R-amplitude (ECG-derived) series."""
    s = rec.signal("ecg")
    r = _r_peaks(rec)
    amp = s.data[0, np.round(r * s.fs_hz).astype(int)].astype(np.float64)
    feats, labels = [], []
    for start_n in window_starts(s.data.shape[1], int(window_s * s.fs_hz), int(stride_s * s.fs_hz)):
        a = start_n / s.fs_hz
        lab = rec.labels.window_label(a, window_s)
        keep = (r >= a) & (r < a + window_s)
        if lab == UNLABELLED or keep.sum() < 5:
            continue
        rr = np.diff(r[keep])
        grid = np.arange(a, a + window_s, 0.25)
        edr = np.interp(grid, r[keep], amp[keep])
        f = np.fft.rfftfreq(grid.size, 0.25)
        p = np.abs(np.fft.rfft((edr - edr.mean()) * np.hanning(grid.size))) ** 2
        fast, slow = p[(f >= 0.25) & (f < 0.5)].sum(), p[(f >= 0.1) & (f < 0.25)].sum()
        feats.append([60.0 / rr.mean(), np.log(_rmssd_ms(r[keep])), fast / (fast + slow + 1e-12)])
        labels.append(lab)
    return np.asarray(feats), np.asarray(labels)


def test_cross_subject_feature_classifier_is_learnable_but_not_trivial() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xs, ys, groups = [], [], []
    for rec in make_dataset(SyntheticConfig(n_subjects=16, minutes_per_condition=1.5)):
        x, y = _window_features(rec)
        xs.append(x)
        ys.append(y)
        groups += [rec.subject] * len(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert np.isfinite(x).all() and np.bincount(y).min() > 100
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pred = cross_val_predict(clf, x, y, groups=groups, cv=GroupKFold(4))  # test subjects never seen in training
    bacc = balanced_accuracy_score(y, pred)
    assert 0.65 <= bacc <= 0.90, f"cross-subject balanced accuracy {bacc:.3f} outside the target band"
    shuffled = np.random.default_rng(0).permutation(y)
    chance = balanced_accuracy_score(shuffled, cross_val_predict(clf, x, shuffled, groups=groups, cv=GroupKFold(4)))
    assert chance < 0.45  # the same pipeline without real labels is at chance


def test_other_registered_conditions_can_be_chosen() -> None:
    cfg = SyntheticConfig(n_subjects=4, minutes_per_condition=1.0, conditions=("meditation", "baseline"))
    hr_drop = []
    for rec in make_dataset(cfg):
        assert rec.labels.class_names == ("meditation", "baseline")
        params = rec.meta["condition_params"]
        assert params["meditation"]["resp_bpm"] < 8.0 < params["baseline"]["resp_bpm"]
        r = _r_peaks(rec)
        hr = {seg["condition"]: _robust_hr_bpm(_segment(r, seg)) for seg in rec.meta["segments"]}
        hr_drop.append(hr["baseline"] - hr["meditation"])
    assert np.mean(hr_drop) > 1.5
