"""Synthetic paired multi-sensor recordings (ECG, wrist PPG, optional EMG and EEG) with stress-like conditions.

One beat train per subject drives both the ECG and the PPG, so the two are beat-synchronous the way chest ECG and
wrist BVP are in WESAD: every PPG pulse arrives one pulse transit time (PTT) after its R-peak. Conditions act only
through physiology (heart rate, HRV, breathing, PTT, pulse amplitude, muscle tone, alpha power) and subjects differ,
so a classifier must generalise across people. Ground truth (R-peaks, PTT per beat, condition parameters) is kept in
``Recording.meta``. Equations and parameter tables: docs/synthetic_data.md.

Example::

    recs = make_dataset(SyntheticConfig(n_subjects=4, minutes_per_condition=1.0))
    recs[0].signal("ecg").data.shape   # (1, T) float32 at 250 Hz
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgebridge.data import physiology as phys
from edgebridge.data.recordings import UNLABELLED, Labels, Recording, Signal, register_loader

log = logging.getLogger(__name__)

EEG_CHANNELS = ("F3", "C3", "O1", "F4", "C4", "O2")
EEG_ALPHA_WEIGHT = {"F": 0.35, "C": 0.6, "O": 1.0}  # alpha is strongest over occipital sites
ECG_WAVES = ("P", "Q", "R", "S", "T")


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. ``noise_level`` scales every artefact (0 = clean physiology, 1 = realistic)."""

    n_subjects: int = 24
    minutes_per_condition: float = 3.0
    conditions: tuple[str, ...] = ("baseline", "stress", "amusement")
    fs_ecg_hz: float = 250.0
    fs_ppg_hz: float = 64.0
    include_emg: bool = False
    fs_emg_hz: float = 500.0
    include_eeg: bool = False
    fs_eeg_hz: float = 128.0
    noise_level: float = 1.0
    seed: int = 0
    transition_s: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(str(c) for c in self.conditions))
        if self.n_subjects < 1:
            raise ValueError(f"n_subjects must be >= 1, got {self.n_subjects}")
        if not self.minutes_per_condition > 0:
            raise ValueError(f"minutes_per_condition must be positive, got {self.minutes_per_condition}")
        if not self.conditions or len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"conditions must be non-empty and unique, got {list(self.conditions)}")
        for name in self.conditions:
            phys.CONDITIONS.get(name)  # KeyError with close matches for a typo
        for name in ("fs_ecg_hz", "fs_ppg_hz", "fs_emg_hz", "fs_eeg_hz"):
            if not getattr(self, name) >= 32.0:
                raise ValueError(f"{name} must be >= 32 Hz to hold the waveforms, got {getattr(self, name)}")
        if not self.noise_level >= 0 or not self.transition_s >= 0:
            raise ValueError(f"noise_level and transition_s must be >= 0, got {self.noise_level}, {self.transition_s}")


def _render(n: int, fs_hz: float, centers_s: np.ndarray, reach_s: float, kernel: Callable) -> np.ndarray:
    """Sum of per-event kernels evaluated only within ``reach_s`` of each centre (bincount, no per-sample loop).

    ``kernel(dt_s, k)`` gets the offsets (K, L) from each centre and returns their values. Shapes: -> (n,).
    """
    half = int(np.ceil(reach_s * fs_hz)) + 1
    idx = np.round(centers_s * fs_hz).astype(np.int64)[:, None] + np.arange(-half, half + 1)
    val = kernel(idx / fs_hz - centers_s[:, None])
    ok = (idx >= 0) & (idx < n)
    return np.bincount(idx[ok], weights=val[ok], minlength=n)


def render_waves(n: int, fs_hz: float, centers_s: np.ndarray, amps: np.ndarray, sigma_before_s: np.ndarray,
                 sigma_after_s: np.ndarray) -> np.ndarray:
    """Sum of (possibly asymmetric) Gaussian waves. Widths get a half-sample floor so narrow waves (the R wave at
    low rates) are not point-sampled away. Shapes: centers_s, amps, sigma_*: (K,) -> (n,) float64.
    """
    floor = (0.5 / fs_hz) ** 2
    s_lo = np.sqrt(np.broadcast_to(sigma_before_s, centers_s.shape) ** 2 + floor)[:, None]
    s_hi = np.sqrt(np.broadcast_to(sigma_after_s, centers_s.shape) ** 2 + floor)[:, None]
    reach = 4.5 * max(s_lo.max(initial=0.0), s_hi.max(initial=0.0))
    return _render(n, fs_hz, centers_s, reach,
                   lambda dt: amps[:, None] * np.exp(-0.5 * (dt / np.where(dt < 0, s_lo, s_hi)) ** 2))


def render_pulses(n: int, fs_hz: float, peaks_s: np.ndarray, amps: np.ndarray, rise_s: float, fall_s: np.ndarray,
                  tail_frac: float, tail_s: np.ndarray) -> np.ndarray:
    """PPG systolic pulses: a raised-cosine upstroke from the foot (``rise_s`` before the peak), then a Gaussian
    fall mixed with an exponential diastolic run-off that carries on into the next beat.

    Shapes: peaks_s, amps, fall_s, tail_s: (K,) -> (n,) float64.
    """
    fall, tail = fall_s[:, None], tail_s[:, None]

    def kernel(dt: np.ndarray) -> np.ndarray:
        up = 0.5 + 0.5 * np.cos(np.pi * np.clip(dt / rise_s, -1.0, 0.0))
        down = (1 - tail_frac) * np.exp(-0.5 * (dt / fall) ** 2) + tail_frac * np.exp(-np.maximum(dt, 0) / tail)
        return amps[:, None] * np.where(dt < 0, up, down)

    return _render(n, fs_hz, peaks_s, max(rise_s, 4.5 * fall_s.max(initial=0.0), 5.0 * tail_s.max(initial=0.0)),
                   kernel)


def _at(t_s: np.ndarray, drv: phys.Drivers, series: np.ndarray) -> np.ndarray:
    return np.interp(t_s, drv.t_s, series)


def _prev_rr(r_s: np.ndarray) -> np.ndarray:
    """RR interval ending at each beat (the first one copies the second), clipped to 0.3..2 s."""
    rr = np.diff(r_s, prepend=r_s[0] - (r_s[1] - r_s[0]) if r_s.size > 1 else r_s[0] - 1.0)
    return np.clip(rr, 0.3, 2.0)


def render_ecg(r_s: np.ndarray, traits: phys.SubjectTraits, drv: phys.Drivers, n: int, fs_hz: float,
               rng: np.random.Generator, noise_level: float) -> np.ndarray:
    """Lead-II-like ECG (mV): P-Q-R-S-T Gaussians per beat, timings scaled with RR, amplitudes with respiration.

    Shapes: r_s (n_beats,) -> (n,).
    """
    rr = _prev_rr(r_s)
    srr = np.sqrt(rr)
    offsets = {"P": -(0.11 + 0.06 * rr), "Q": -0.028, "R": 0.0, "S": 0.03, "T": 0.27 * srr}
    widths = {"P": (0.022, 0.022), "Q": (0.009, 0.009), "R": (0.010, 0.010), "S": (0.011, 0.011),
              "T": (0.06 * srr, 0.04 * srr)}
    beat_gain = (1.0 + 0.08 * _at(r_s, drv, drv.resp)) * (1.0 + 0.02 * rng.standard_normal(r_s.size))
    centers, amps, s_lo, s_hi = [], [], [], []
    for name, a_mv in zip(ECG_WAVES, traits.ecg_amps_mv, strict=True):
        centers.append(r_s + offsets[name])
        amps.append(a_mv * beat_gain)
        s_lo.append(np.broadcast_to(widths[name][0], r_s.shape))
        s_hi.append(np.broadcast_to(widths[name][1], r_s.shape))
    clean = render_waves(n, fs_hz, *map(np.concatenate, (centers, amps, s_lo, s_hi)))
    t = np.arange(n) / fs_hz
    wander = _at(t, drv, 0.06 * drv.resp + 0.08 * phys.smooth_noise(rng, drv.t_s.size, phys.PHYS_FS_HZ, 0.05))
    mains = 0.008 * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 2 * np.pi)) if fs_hz > 100.0 else 0.0
    noise = wander + mains + 0.012 * rng.standard_normal(n)
    return clean + noise_level * noise


def ppg_beats(r_s: np.ndarray, traits: phys.SubjectTraits, drv: phys.Drivers,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-beat PPG ground truth: PTT (R-peak → pulse foot), systolic peak time and pulse amplitude."""
    resp_k = _at(r_s, drv, drv.resp)
    ptt = _at(r_s, drv, drv.curves["ptt_s"]) + 0.004 * resp_k + 0.003 * rng.standard_normal(r_s.size)
    amp = _at(r_s, drv, drv.curves["ppg_amp"]) * (1.0 - 0.1 * resp_k) * (1.0 + 0.03 * rng.standard_normal(r_s.size))
    return {"ptt_s": ptt, "peak_s": r_s + ptt + traits.ppg_rise_s, "amp": amp}


def render_ppg(r_s: np.ndarray, beats: dict[str, np.ndarray], traits: phys.SubjectTraits, drv: phys.Drivers,
               n: int, fs_hz: float, rng: np.random.Generator, noise_level: float) -> tuple[np.ndarray, np.ndarray]:
    """Wrist BVP-like PPG: per beat a sharp-footed systolic pulse with diastolic run-off plus a diastolic wave;
    respiration-induced intensity variation; drift, sensor noise and motion-artefact bursts (× noise_level).

    Shapes: r_s (n_beats,) -> ppg (n,), artefact intervals (K, 2) in seconds.
    """
    srr = np.sqrt(_prev_rr(r_s))
    t_sys, amp = beats["peak_s"], beats["amp"]
    t_dia = t_sys + traits.ppg_dia_delay_s * srr
    clean = render_pulses(n, fs_hz, t_sys, amp, traits.ppg_rise_s, traits.ppg_fall_s * srr, traits.ppg_tail_frac,
                          traits.ppg_tail_s * srr)
    clean += render_waves(n, fs_hz, t_dia, amp * traits.ppg_dia_ratio, 0.07 * srr, 0.09 * srr)
    t = np.arange(n) / fs_hz
    clean += _at(t, drv, 0.08 * drv.curves["ppg_amp"] * drv.resp)  # respiration-induced intensity variation
    total_s = n / fs_hz
    bursts = phys.draw_bursts(rng, total_s, 1.0, (1.0, 4.0))
    heights = traits.ppg_amp * rng.uniform(0.5, 2.0, len(bursts))
    motion = phys.burst_envelope(t, bursts, heights) * phys.shaped_noise(rng, n, fs_hz, lo_hz=0.2,
                                                                          hi_hz=min(4.0, 0.45 * fs_hz))
    drift = 0.3 * traits.ppg_amp * _at(t, drv, phys.smooth_noise(rng, drv.t_s.size, phys.PHYS_FS_HZ, 0.02))
    noise = motion + drift + 0.02 * traits.ppg_amp * rng.standard_normal(n)
    return clean + noise_level * noise, bursts


def render_emg(traits: phys.SubjectTraits, drv: phys.Drivers, n: int, fs_hz: float, rng: np.random.Generator,
               noise_level: float) -> np.ndarray:
    """Surface EMG (mV): 20-150 Hz noise whose tone follows the condition, laughter and random activations.

    Shapes: -> (n,).
    """
    t = np.arange(n) / fs_hz
    carrier = phys.shaped_noise(rng, n, fs_hz, lo_hz=20.0, hi_hz=min(150.0, 0.45 * fs_hz))
    bursts = phys.draw_bursts(rng, n / fs_hz, 2.0, (0.3, 1.5))
    active = phys.burst_envelope(t, bursts, traits.emg_tone * rng.uniform(2.0, 5.0, len(bursts)))
    tone = _at(t, drv, drv.curves["emg_tone"] * (1.0 + 2.0 * drv.laugh))
    return (tone + active) * carrier + noise_level * 0.003 * rng.standard_normal(n)


def render_eeg(traits: phys.SubjectTraits, drv: phys.Drivers, n: int, fs_hz: float, rng: np.random.Generator,
               noise_level: float) -> np.ndarray:
    """EEG-like channels (µV): shared + own 1/f^β background and an alpha rhythm, occipital-weighted, whose
    amplitude follows the condition. Shapes: -> (len(EEG_CHANNELS), n)."""
    def pink(f_hz: np.ndarray) -> np.ndarray:
        return np.where(f_hz > 0.5, np.maximum(f_hz, 0.5) ** (-traits.eeg_exponent / 2), 0.0)

    def alpha_gain(f_hz: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * ((f_hz - traits.alpha_hz) / 0.7) ** 2)

    t = np.arange(n) / fs_hz
    alpha_env = _at(t, drv, drv.curves["alpha_amp"] * (1.0 + 0.3 * phys.smooth_noise(
        rng, drv.t_s.size, phys.PHYS_FS_HZ, 0.2)))
    common_bg = phys.shaped_noise(rng, n, fs_hz, gain=pink)
    common_alpha = phys.shaped_noise(rng, n, fs_hz, gain=alpha_gain)
    rows = []
    for ch in EEG_CHANNELS:
        bg = 15.0 * (0.6 * common_bg + 0.8 * phys.shaped_noise(rng, n, fs_hz, gain=pink))
        alpha = EEG_ALPHA_WEIGHT[ch[0]] * alpha_env * (
            0.85 * common_alpha + 0.5 * phys.shaped_noise(rng, n, fs_hz, gain=alpha_gain))
        rows.append(bg + alpha + noise_level * 2.0 * rng.standard_normal(n))
    return np.stack(rows)


def subject_id(index: int, n_subjects: int) -> str:
    """``S01``, ``S02``, …; wider zero-padding only past 99 subjects so ids always sort."""
    return f"S{index + 1:0{max(2, len(str(n_subjects)))}d}"


def _labels(timeline: phys.Timeline, conditions: tuple[str, ...], n: int, fs_hz: float) -> Labels:
    """Class index (position in ``conditions``) inside each condition, UNLABELLED in transitions."""
    codes = np.full(n, UNLABELLED, dtype=np.int64)
    for name, a_s, b_s in zip(timeline.conditions, timeline.starts_s, timeline.ends_s, strict=True):
        codes[int(round(a_s * fs_hz)):int(round(b_s * fs_hz))] = conditions.index(name)
    return Labels(codes, fs_hz, conditions)


def _n_samples(total_s: float, fs_hz: float) -> int:
    return int(round(total_s * fs_hz))


def make_subject(config: SyntheticConfig, index: int) -> Recording:
    """The recording of subject ``index`` (0-based); depends only on ``config`` and ``index``, not on n_subjects.

    Each component draws from its own child of ``SeedSequence(seed, spawn_key=(index,))``, so switching EMG/EEG
    on or changing a sensor's rate leaves the beat train and the other sensors unchanged.
    """
    seeds = np.random.SeedSequence(config.seed, spawn_key=(index,)).spawn(6)
    rng_order, rng_phys, rng_ecg, rng_ppg, rng_emg, rng_eeg = (np.random.default_rng(s) for s in seeds)
    traits = phys.draw_traits(rng_phys)
    values = phys.condition_values(traits, rng_phys)
    order = tuple(config.conditions[i] for i in rng_order.permutation(len(config.conditions)))
    timeline = phys.make_timeline(order, 60.0 * config.minutes_per_condition, config.transition_s)
    drv = phys.make_drivers(timeline, values, rng_phys)
    r_s = phys.beat_train(drv, traits, rng_phys)
    nl = config.noise_level

    n_ecg, n_ppg = _n_samples(timeline.total_s, config.fs_ecg_hz), _n_samples(timeline.total_s, config.fs_ppg_hz)
    ecg = render_ecg(r_s, traits, drv, n_ecg, config.fs_ecg_hz, rng_ecg, nl)
    beats = ppg_beats(r_s, traits, drv, rng_ppg)
    ppg, artefacts = render_ppg(r_s, beats, traits, drv, n_ppg, config.fs_ppg_hz, rng_ppg, nl)
    signals = {"ecg": Signal(ecg[None], config.fs_ecg_hz, ("ecg",)),
               "ppg": Signal(ppg[None], config.fs_ppg_hz, ("ppg",))}
    if config.include_emg:
        n = _n_samples(timeline.total_s, config.fs_emg_hz)
        signals["emg"] = Signal(render_emg(traits, drv, n, config.fs_emg_hz, rng_emg, nl)[None], config.fs_emg_hz,
                                ("emg",))
    if config.include_eeg:
        n = _n_samples(timeline.total_s, config.fs_eeg_hz)
        signals["eeg"] = Signal(render_eeg(traits, drv, n, config.fs_eeg_hz, rng_eeg, nl), config.fs_eeg_hz,
                                EEG_CHANNELS)
    labels = _labels(timeline, config.conditions, n_ecg, config.fs_ecg_hz)
    meta = _meta(config, timeline, values, traits, r_s, beats, artefacts, drv)
    return Recording(subject_id(index, config.n_subjects), signals, labels, meta)


def _meta(config: SyntheticConfig, timeline: phys.Timeline, values: dict[str, dict[str, float]],
          traits: phys.SubjectTraits, r_s: np.ndarray, beats: dict[str, np.ndarray], artefacts: np.ndarray,
          drv: phys.Drivers) -> dict[str, Any]:
    """Ground truth a test or a demo can check the signals against (times in seconds from the first sample)."""
    return {
        "generator": "edgebridge.synthetic",
        "config": asdict(config),
        "condition_order": timeline.conditions,
        "segments": [{"condition": c, "start_s": float(a), "end_s": float(b)}
                     for c, a, b in zip(timeline.conditions, timeline.starts_s, timeline.ends_s, strict=True)],
        "condition_params": {c: dict(values[c]) for c in config.conditions},
        "traits": traits.as_dict(),
        "r_peaks_s": r_s,
        "ptt_s": beats["ptt_s"],
        "ppg_peak_s": beats["peak_s"],
        "ppg_rise_s": traits.ppg_rise_s,
        "ppg_artifacts_s": artefacts,
        "laugh_bursts_s": drv.laugh_bursts,
    }


def make_dataset(config: SyntheticConfig) -> list[Recording]:
    """One Recording per subject, ``S01``… in order; bit-for-bit deterministic for a given config."""
    t0 = time.perf_counter()
    recs = [make_subject(config, k) for k in range(config.n_subjects)]
    log.debug("generated %d synthetic subjects in %.2f s", len(recs), time.perf_counter() - t0)
    return recs


@register_loader("synthetic")
def load_synthetic(root: object = None, **config_fields: Any) -> Iterator[Recording]:
    """Loader-registry entry: ``get_loader("synthetic")(None, n_subjects=4)``. ``root`` is ignored (no files)."""
    config = SyntheticConfig(**config_fields)
    for k in range(config.n_subjects):
        yield make_subject(config, k)
