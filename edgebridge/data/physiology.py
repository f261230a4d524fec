"""Physiology behind the synthetic data set: condition effects, subject traits, slow drivers and the beat train.

Everything here lives on a coarse *physiology grid* (``PHYS_FS_HZ``) that does not depend on any sensor's sample
rate, so the heart beats and breaths of a subject are the same whatever rates the sensors are rendered at. The
sensor renderers in :mod:`edgebridge.data.synthetic` turn these drivers into ECG, PPG, EMG and EEG samples.
Equations and parameter tables: docs/synthetic_data.md.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
from scipy import fft as sfft

from edgebridge.registry import Registry

PHYS_FS_HZ = 50.0  # grid of the slow drivers (respiration, HR, PTT, amplitudes)
Range = tuple[float, float]


@dataclass(frozen=True)
class ConditionEffect:
    """How one experimental condition changes physiology. Each range is drawn uniformly once per subject.

    Attributes:
        hr_delta_bpm: added to the subject's resting heart rate.
        hrv_factor: multiplies the respiratory sinus arrhythmia (RSA) depth and the white RR jitter.
        lf_factor: multiplies the Mayer-wave (~0.1 Hz) depth.
        resp_rate_bpm: absolute breathing rate in breaths/min, or None to use the resting rate plus ``resp_delta_bpm``.
        resp_delta_bpm: added to the resting breathing rate when ``resp_rate_bpm`` is None.
        resp_depth_factor: multiplies breathing depth (and with it RSA-free respiratory modulations).
        ptt_delta_s: added to the resting pulse transit time (vasoconstriction and higher BP shorten it).
        ppg_amp_factor: multiplies the PPG pulse amplitude (vasoconstriction makes it smaller).
        emg_tone_factor: multiplies the tonic EMG level.
        alpha_factor: multiplies the EEG alpha amplitude (alpha blocking under arousal).
        laugh_per_min: mean rate of laughter bursts (fast, deep, irregular breathing with a small HR rise).
    """

    hr_delta_bpm: Range = (0.0, 0.0)
    hrv_factor: Range = (1.0, 1.0)
    lf_factor: Range = (1.0, 1.0)
    resp_rate_bpm: Range | None = None
    resp_delta_bpm: Range = (0.0, 0.0)
    resp_depth_factor: Range = (1.0, 1.0)
    ptt_delta_s: Range = (0.0, 0.0)
    ppg_amp_factor: Range = (1.0, 1.0)
    emg_tone_factor: Range = (1.0, 1.0)
    alpha_factor: Range = (1.0, 1.0)
    laugh_per_min: float = 0.0


CONDITIONS: Registry[ConditionEffect] = Registry("condition")
CONDITIONS.add("baseline", ConditionEffect())
CONDITIONS.add("stress", ConditionEffect(
    hr_delta_bpm=(12.0, 22.0), hrv_factor=(0.4, 0.6), lf_factor=(0.7, 0.9), resp_rate_bpm=(18.0, 22.0),
    resp_depth_factor=(0.7, 0.9), ptt_delta_s=(-0.040, -0.020), ppg_amp_factor=(0.65, 0.75),
    emg_tone_factor=(1.8, 2.6), alpha_factor=(0.45, 0.6)))
CONDITIONS.add("amusement", ConditionEffect(
    hr_delta_bpm=(4.0, 10.0), hrv_factor=(1.1, 1.3), resp_delta_bpm=(1.0, 3.0), resp_depth_factor=(1.0, 1.2),
    ptt_delta_s=(-0.012, -0.004), ppg_amp_factor=(0.85, 0.95), emg_tone_factor=(1.1, 1.3),
    alpha_factor=(0.75, 0.9), laugh_per_min=3.0))
CONDITIONS.add("meditation", ConditionEffect(
    hr_delta_bpm=(-6.0, -2.0), hrv_factor=(1.2, 1.5), lf_factor=(1.0, 1.2), resp_rate_bpm=(5.5, 8.0),
    resp_depth_factor=(1.3, 1.6), ptt_delta_s=(0.005, 0.015), ppg_amp_factor=(1.0, 1.1),
    emg_tone_factor=(0.7, 0.85), alpha_factor=(1.3, 1.6)))

# Scalars that a condition sets; drawn per subject and condition, ramped linearly through transitions.
DRIVER_KEYS = ("hr_bpm", "rsa", "mayer", "jitter_s", "resp_bpm", "resp_depth", "ptt_s", "ppg_amp", "emg_tone",
               "alpha_amp", "laugh_per_min")


@dataclass(frozen=True)
class SubjectTraits:
    """Resting physiology and sensor morphology of one synthetic subject (drawn once per subject)."""

    hr_rest_bpm: float
    rsa: float  # RSA depth as a fraction of instantaneous heart rate
    mayer: float  # Mayer-wave depth, fraction of heart rate
    mayer_hz: float
    jitter_s: float  # white beat-time jitter (s.d.)
    resp_rest_bpm: float
    ptt_rest_s: float  # R-peak to PPG pulse foot
    ppg_rise_s: float  # PPG foot to systolic peak
    ppg_amp: float
    ppg_fall_s: float  # decay width of the systolic wave at RR = 1 s
    ppg_tail_frac: float  # share of the systolic wave that runs off exponentially through diastole
    ppg_tail_s: float  # run-off time constant at RR = 1 s
    ppg_dia_ratio: float
    ppg_dia_delay_s: float  # systolic peak to diastolic peak at RR = 1 s
    ecg_amps_mv: tuple[float, float, float, float, float]  # P, Q, R, S, T
    emg_tone: float
    alpha_hz: float
    alpha_amp: float
    eeg_exponent: float

    def as_dict(self) -> dict[str, float | tuple[float, ...]]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def draw_traits(rng: np.random.Generator) -> SubjectTraits:
    """Draw one subject's resting physiology; spreads make classes overlap across subjects."""
    r_mv = rng.uniform(0.8, 1.6)
    return SubjectTraits(
        hr_rest_bpm=float(np.clip(rng.normal(68.0, 7.0), 50.0, 95.0)),
        rsa=float(0.045 * rng.lognormal(0.0, 0.35)),
        mayer=float(0.02 * rng.lognormal(0.0, 0.3)),
        mayer_hz=float(rng.uniform(0.08, 0.12)),
        jitter_s=float(0.006 * rng.lognormal(0.0, 0.3)),
        resp_rest_bpm=float(np.clip(rng.normal(14.0, 2.0), 9.0, 19.0)),
        ptt_rest_s=float(np.clip(rng.normal(0.24, 0.03), 0.16, 0.34)),
        ppg_rise_s=float(rng.uniform(0.11, 0.16)),
        ppg_amp=float(rng.lognormal(0.0, 0.3)),
        ppg_fall_s=float(rng.uniform(0.13, 0.17)),
        ppg_tail_frac=float(rng.uniform(0.25, 0.4)),
        ppg_tail_s=float(rng.uniform(0.3, 0.45)),
        ppg_dia_ratio=float(rng.uniform(0.2, 0.35)),
        ppg_dia_delay_s=float(rng.uniform(0.30, 0.36)),
        ecg_amps_mv=(float(rng.uniform(0.1, 0.2)), float(-r_mv * rng.uniform(0.05, 0.12)), float(r_mv),
                     float(-r_mv * rng.uniform(0.15, 0.3)), float(rng.uniform(0.2, 0.4))),
        emg_tone=float(0.02 * rng.lognormal(0.0, 0.3)),
        alpha_hz=float(np.clip(rng.normal(10.0, 0.8), 8.0, 12.0)),
        alpha_amp=float(12.0 * rng.lognormal(0.0, 0.3)),
        eeg_exponent=float(rng.uniform(1.4, 2.0)),
    )


def condition_values(traits: SubjectTraits, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Per-condition driver values for every registered condition; each condition draws from its own stream."""
    base = int(rng.integers(2**32))
    out: dict[str, dict[str, float]] = {}
    for name in CONDITIONS.names():
        eff = CONDITIONS.get(name)
        crng = np.random.default_rng([base, zlib.crc32(name.encode())])  # registering more conditions changes nothing
        u = {}
        for f in fields(eff):  # fixed order, so a condition's draws never depend on the others
            if f.name != "laugh_per_min":
                u[f.name] = crng.uniform(*(getattr(eff, f.name) or (0.0, 0.0)))
        resp = u["resp_rate_bpm"] if eff.resp_rate_bpm is not None else traits.resp_rest_bpm + u["resp_delta_bpm"]
        hrv = u["hrv_factor"]
        out[name] = {
            "hr_bpm": traits.hr_rest_bpm + u["hr_delta_bpm"], "rsa": traits.rsa * hrv,
            "mayer": traits.mayer * u["lf_factor"], "jitter_s": traits.jitter_s * hrv, "resp_bpm": resp,
            "resp_depth": u["resp_depth_factor"], "ptt_s": traits.ptt_rest_s + u["ptt_delta_s"],
            "ppg_amp": traits.ppg_amp * u["ppg_amp_factor"], "emg_tone": traits.emg_tone * u["emg_tone_factor"],
            "alpha_amp": traits.alpha_amp * u["alpha_factor"], "laugh_per_min": eff.laugh_per_min,
        }
    return out


@dataclass(frozen=True)
class Timeline:
    """Where each condition lies in a recording; the gaps between them are unlabelled transitions."""

    conditions: tuple[str, ...]  # in recording order
    starts_s: np.ndarray
    ends_s: np.ndarray
    total_s: float


def make_timeline(order: tuple[str, ...], condition_s: float, transition_s: float) -> Timeline:
    """Conditions back to back, ``transition_s`` apart. Shapes: starts_s, ends_s: (n_conditions,)."""
    starts = np.arange(len(order)) * (condition_s + transition_s)
    return Timeline(tuple(order), starts, starts + condition_s, float(starts[-1] + condition_s))


def schedule(timeline: Timeline, values: dict[str, dict[str, float]], key: str, t_s: np.ndarray) -> np.ndarray:
    """Piecewise-constant per condition, linear ramps through transitions. Shapes: t_s (N,) -> (N,)."""
    knots_t = np.stack([timeline.starts_s, timeline.ends_s], axis=1).ravel()
    knots_v = np.repeat([values[c][key] for c in timeline.conditions], 2)
    return np.interp(t_s, knots_t, knots_v)


def shaped_noise(rng: np.random.Generator, n: int, fs_hz: float,
                 gain: Callable[[np.ndarray], np.ndarray] | None = None, lo_hz: float = 0.0,
                 hi_hz: float | None = None) -> np.ndarray:
    """Gaussian noise with a spectrum shaped in the FFT domain, scaled to unit s.d.

    ``gain(f_hz)`` (amplitude per frequency) wins over the band ``[lo_hz, hi_hz]``. The FFT runs on a fast
    length and is cut back to ``n``. Shapes: -> (n,) float64.
    """
    m = sfft.next_fast_len(n, real=True)
    spec = sfft.rfft(rng.standard_normal(m))
    f_hz = sfft.rfftfreq(m, 1.0 / fs_hz)
    g = gain(f_hz) if gain is not None else ((f_hz >= lo_hz) & (f_hz <= (hi_hz or fs_hz))).astype(float)
    y = sfft.irfft(spec * g, m)[:n]
    sd = y.std()
    return y / sd if sd > 0 else y


def smooth_noise(rng: np.random.Generator, n: int, fs_hz: float, cutoff_hz: float) -> np.ndarray:
    """Unit-s.d. noise with a Gaussian low-pass spectrum: slow drifts and wanders. Shapes: -> (n,)."""
    return shaped_noise(rng, n, fs_hz, gain=lambda f_hz: np.exp(-0.5 * (f_hz / cutoff_hz) ** 2))


def draw_bursts(rng: np.random.Generator, total_s: float, per_min: float, dur_s: Range) -> np.ndarray:
    """Poisson burst onsets with uniform durations. Shapes: -> (n_bursts, 2) as [start_s, end_s]."""
    n = rng.poisson(per_min * total_s / 60.0)
    start = np.sort(rng.uniform(0.0, total_s, n))
    return np.stack([start, start + rng.uniform(*dur_s, n)], axis=1)


def burst_envelope(t_s: np.ndarray, bursts: np.ndarray, heights: np.ndarray | None = None) -> np.ndarray:
    """Sum of raised-cosine bumps, one per burst; clipped to 1 when no ``heights`` are given.

    Shapes: t_s (N,), bursts (K, 2), heights (K,) -> (N,).
    """
    env = np.zeros_like(t_s)
    h = np.ones(len(bursts)) if heights is None else heights
    for (a, b), hk in zip(bursts, h, strict=True):  # a few bursts per recording; each touches only its own slice
        i, j = np.searchsorted(t_s, [a, b])
        env[i:j] += hk * (0.5 - 0.5 * np.cos(2 * np.pi * (t_s[i:j] - a) / (b - a)))
    return np.minimum(env, 1.0) if heights is None else env


@dataclass
class Drivers:
    """Slow physiological drivers on the physiology grid. Shapes: every array (N,) at ``PHYS_FS_HZ``."""

    t_s: np.ndarray
    curves: dict[str, np.ndarray]  # DRIVER_KEYS, ramped through transitions
    resp: np.ndarray  # respiration (chest expansion), ~unit amplitude × depth
    resp_phase: np.ndarray  # radians; inspiration where sin(phase) rises
    laugh: np.ndarray  # laughter envelope in [0, 1]
    laugh_bursts: np.ndarray  # (K, 2) start/end seconds


def make_drivers(timeline: Timeline, values: dict[str, dict[str, float]], rng: np.random.Generator) -> Drivers:
    """Respiration (rate, depth, laughter) and every condition curve on the physiology grid."""
    t = np.arange(int(np.ceil(timeline.total_s * PHYS_FS_HZ)) + 1) / PHYS_FS_HZ
    curves = {k: schedule(timeline, values, k, t) for k in DRIVER_KEYS}
    peak_rate = max(values[c]["laugh_per_min"] for c in timeline.conditions)
    cand = draw_bursts(rng, timeline.total_s, peak_rate, (2.0, 6.0))
    keep = rng.uniform(0.0, 1.0, len(cand)) * max(peak_rate, 1e-9) < np.interp(cand[:, 0], t, curves["laugh_per_min"])
    laugh_bursts = cand[keep]
    laugh = burst_envelope(t, laugh_bursts)
    f_laugh_hz = rng.uniform(0.6, 1.0)
    f_hz = curves["resp_bpm"] / 60.0 * (1.0 + 0.08 * smooth_noise(rng, t.size, PHYS_FS_HZ, 0.05))
    f_hz = f_hz * (1.0 - laugh) + f_laugh_hz * laugh
    phase = 2 * np.pi * np.cumsum(f_hz) / PHYS_FS_HZ + rng.uniform(0, 2 * np.pi)
    depth = curves["resp_depth"] * (1.0 + 0.1 * smooth_noise(rng, t.size, PHYS_FS_HZ, 0.03)) * (1.0 + 0.8 * laugh)
    resp = depth * (np.sin(phase) + 0.25 * np.sin(2 * phase + 0.5)) / 1.03
    return Drivers(t, curves, resp, phase, laugh, laugh_bursts)


def beat_train(drv: Drivers, traits: SubjectTraits, rng: np.random.Generator) -> np.ndarray:
    """R-peak times from an integral pulse-frequency-modulation model plus white jitter.

    Instantaneous heart rate h(t) = HR(t)/60 · (1 + RSA(t)·sin(φ_resp − 0.5) + Mayer(t)·sin(2π f_M t + ψ(t)));
    a beat fires each time ∫h crosses an integer. Shapes: -> (n_beats,) seconds, strictly increasing.
    """
    t, c = drv.t_s, drv.curves
    hr_bpm = c["hr_bpm"] + 1.5 * smooth_noise(rng, t.size, PHYS_FS_HZ, 0.01) + 5.0 * drv.laugh
    mayer_phase = 2 * np.pi * traits.mayer_hz * t + rng.uniform(0, 2 * np.pi) + 0.6 * smooth_noise(
        rng, t.size, PHYS_FS_HZ, 0.01)
    mod = c["rsa"] * np.sin(drv.resp_phase - 0.5) + c["mayer"] * np.sin(mayer_phase)
    h_hz = hr_bpm / 60.0 * (1.0 + mod)
    beats_phase = np.concatenate([[0.0], np.cumsum(0.5 * (h_hz[1:] + h_hz[:-1])) / PHYS_FS_HZ])
    beats_phase += rng.uniform(0.0, 1.0)
    k = np.arange(np.ceil(beats_phase[0]), np.floor(beats_phase[-1]) + 1)
    t_beat = np.interp(k, beats_phase, t)
    t_beat = t_beat + np.interp(t_beat, t, c["jitter_s"]) * rng.standard_normal(t_beat.size)
    t_beat = np.sort(t_beat)
    return t_beat[(t_beat > 0.05) & (t_beat < t[-1] - 0.05)]
