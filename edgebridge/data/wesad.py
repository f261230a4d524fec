"""WESAD (Schmidt et al., ICMI 2018): chest RespiBAN ECG at 700 Hz + wrist Empatica E4 BVP at 64 Hz, stress labels.

Layout: ``<root>/S2 … S17/SX.pkl`` (S1, S12 absent → 15 subjects). Each pickle was written by Python 2; it holds
plain dicts of NumPy arrays and is read with ``encoding='latin1'`` through :class:`SafeUnpickler`, which only
resolves the NumPy reconstruction globals, so a crafted file cannot run code. Labels at 700 Hz: 1 baseline,
2 stress, 3 amusement are kept; 0 and 4–7 become unlabelled.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal as _sig

from edgebridge.data.generic import DataError, DatasetDefaults, SubjectLoader, check_duration, require_dir
from edgebridge.data.recordings import UNLABELLED, Labels, Recording, Signal, register_loader

# modality -> (device, key, native rate, channel names)
WESAD_CHANNELS: dict[str, tuple[str, str, float, tuple[str, ...]]] = {
    "ecg": ("chest", "ECG", 700.0, ("ECG",)),
    "ppg": ("wrist", "BVP", 64.0, ("BVP",)),
    "resp": ("chest", "Resp", 700.0, ("Resp",)),
    "emg": ("chest", "EMG", 700.0, ("EMG",)),
    "eda": ("wrist", "EDA", 4.0, ("EDA",)),
    "acc": ("wrist", "ACC", 32.0, ("ACC_x", "ACC_y", "ACC_z")),
}
LABEL_FS_HZ = 700.0
CLASSES = {3: ("baseline", "stress", "amusement"), 2: ("non-stress", "stress")}
CODE_MAPS = {3: {1: 0, 2: 1, 3: 2}, 2: {1: 0, 2: 1, 3: 0}}


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    import codecs

    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): codecs.encode}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """Unpickler for pickles of plain containers and NumPy arrays; any other global raises UnpicklingError."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only NumPy arrays and plain "
                                         f"containers are allowed in a data-set pickle") from None


def load_pickle(path: Path) -> dict[str, Any]:
    """Read a WESAD/PPG-DaLiA Python-2 pickle safely (latin1 strings, NumPy arrays only)."""
    if not path.is_file():
        raise DataError(f"subject file not found: {path}")
    try:
        with open(path, "rb") as f:
            obj = SafeUnpickler(io.BufferedReader(f), encoding="latin1").load()
    except (EOFError, pickle.UnpicklingError, ValueError) as err:
        raise DataError(f"{path}: unreadable or truncated pickle ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict) or "signal" not in obj:
        raise DataError(f"{path}: expected a dict with a 'signal' key, got {type(obj).__name__}")
    return obj


def array_signal(data: dict[str, Any], device: str, key: str, fs_hz: float, names: tuple[str, ...],
                 where: str) -> Signal:
    """One sensor array (N,) or (N, C) from ``data['signal'][device][key]`` as a (C, T) Signal."""
    try:
        arr = np.asarray(data["signal"][device][key])
    except KeyError:
        raise DataError(f"{where}: no signal['{device}']['{key}']") from None
    arr = arr.reshape(arr.shape[0], -1).T
    if arr.shape[0] != len(names):
        raise DataError(f"{where}: signal['{device}']['{key}'] has {arr.shape[0]} columns, expected {len(names)}")
    return Signal(arr, fs_hz, names)


def device_signals(data: dict[str, Any], table: dict[str, tuple[str, str, float, tuple[str, ...]]],
                   modalities: Any, duration_s: float, path: Path, dataset: str) -> dict[str, Signal]:
    """The requested modalities of a RespiBAN + E4 pickle (WESAD, PPG-DaLiA), each checked to span ``duration_s``.

    ``table`` maps modality -> (device, key, fs_hz, channel names).
    """
    signals = {}
    for m in modalities:
        if m not in table:
            raise DataError(f"{dataset} has no modality '{m}'; known: {sorted(table)}")
        device, key, fs, chans = table[m]
        sig = array_signal(data, device, key, fs, chans, str(path))
        check_duration(sig.data.shape[1], fs, duration_s, f"{path.name} {device}/{key}")
        signals[m] = sig
    return signals


def subject_dirs(root: Path, pkl_suffix: str = ".pkl") -> list[str]:
    """Ids ``S<n>`` of the subject folders, sorted by number (never by file-system order)."""
    ids = [p.name for p in require_dir(root, "data set").iterdir() if p.is_dir() and p.name[:1] == "S"
           and p.name[1:].isdigit()]
    if not ids:
        raise DataError(f"{root}: no subject folders S<n>")
    return sorted(ids, key=lambda s: int(s[1:]))


# ---------------------------------------------------------------- the paper's whole-session preprocessing


def interp(x: np.ndarray, fs_in_hz: float, fs_out_hz: float) -> np.ndarray:
    """Linear interpolation to a new rate over the session (the paper's ``np.interp``). Shapes: (C, T) -> (C, T')."""
    n_out = int(round(x.shape[1] * fs_out_hz / fs_in_hz))
    t_in, t_out = np.arange(x.shape[1]) / fs_in_hz, np.arange(n_out) / fs_out_hz
    return np.stack([np.interp(t_out, t_in, row) for row in x]).astype(np.float32)


def session_zscore(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-8)).astype(np.float32)


def paper_ecg(x: np.ndarray, fs_hz: float) -> np.ndarray:
    """HuBERT-ECG path of make_WESAD/ISRUC: interp → 500 Hz, FIR 0.05–47 Hz (order 150, zero-phase), interp → 100 Hz,
    z-score over the whole input. Shapes: (C, T@fs) -> (C, T@100 Hz)."""
    y = interp(x, fs_hz, 500.0)
    taps = _sig.firwin(151, [0.05, 47.0], pass_zero=False, fs=500.0)
    y = _sig.filtfilt(taps, [1.0], y, axis=1)
    return session_zscore(interp(y, 500.0, 100.0))


def paper_ppg(x: np.ndarray, fs_hz: float) -> np.ndarray:
    """PaPaGei path of make_WESAD: FFT resample → 125 Hz, Chebyshev-I (4, 0.5 dB) 0.5–12 Hz filtfilt, session z-score.
    Shapes: (C, T@fs) -> (C, T@125 Hz)."""
    y = _sig.resample(x, int(round(x.shape[1] * 125.0 / fs_hz)), axis=1)
    b, a = _sig.cheby1(4, 0.5, [0.5, 12.0], btype="bandpass", fs=125.0)
    return session_zscore(_sig.filtfilt(b, a, y, axis=1))


PAPER_PATHS = {"ecg": (paper_ecg, 100.0), "ppg": (paper_ppg, 125.0)}


class WesadLoader(SubjectLoader):
    """WESAD subjects; options: ``n_classes`` (3: baseline/stress/amusement, 2: stress vs rest), ``modalities``."""

    name = "wesad"
    option_defaults = {"n_classes": 3, "modalities": ("ecg", "ppg")}

    def defaults(self, root: Path, **options: Any) -> DatasetDefaults:
        return DatasetDefaults(new="ppg", old="ecg", window_s=60.0, stride_s=5.0,
                               fractions={"train": 5, "val": 2, "pair": 5, "test": 3})

    def subjects(self, root: Path, **options: Any) -> list[str]:
        return subject_dirs(root)

    def class_names(self, root: Path, **options: Any) -> tuple[str, ...]:
        n = self.options(options)["n_classes"]
        if n not in CLASSES:
            raise ValueError(f"wesad n_classes must be one of {sorted(CLASSES)}, got {n}")
        return CLASSES[n]

    def load(self, root: Path, subject: str, **options: Any) -> list[Recording]:
        opts = self.options(options)
        names = self.class_names(root, **opts)
        path = root / subject / f"{subject}.pkl"
        data = load_pickle(path)
        raw = np.asarray(data.get("label", np.zeros(0))).reshape(-1)
        if raw.size == 0:
            raise DataError(f"{path}: no 'label' array")
        duration_s = raw.size / LABEL_FS_HZ
        signals = device_signals(data, WESAD_CHANNELS, opts["modalities"], duration_s, path, "wesad")
        codes = np.full(raw.size, UNLABELLED, dtype=np.int64)
        for src, dst in CODE_MAPS[len(names)].items():
            codes[raw == src] = dst
        return [Recording(subject=subject, signals=signals, labels=Labels(codes, LABEL_FS_HZ, names),
                          meta={"file": str(path.relative_to(root))})]

    def paper_signals(self, rec: Recording, pair: tuple[str, ...], **options: Any) -> dict[str, Signal]:
        out = {}
        for m in pair:
            if m not in PAPER_PATHS:
                raise DataError(f"wesad paper mode covers {sorted(PAPER_PATHS)}, not '{m}'")
            fn, fs_out = PAPER_PATHS[m]
            sig = rec.signal(m)
            out[m] = Signal(fn(sig.data.astype(np.float64), sig.fs_hz), fs_out, sig.channels)
        return out


register_loader("wesad")(WesadLoader())
