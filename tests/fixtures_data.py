"""Fixture writers in the exact on-disk formats of the real data sets (keys, dtypes, shapes, rates, label codes).

Used by tests/test_data_*.py and benchmarks/data_prepare.py. Signals are simple beat trains: an ECG R spike at each
beat and a PPG pulse ``PTT_S`` later, so alignment can be checked on them.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from pathlib import Path

import numpy as np

PTT_S = 0.25  # fixture pulse transit time: PPG peak this long after the R peak


# ---------------------------------------------------------------- Python-2 style pickles (WESAD, PPG-DaLiA)


class Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us change how str/bytes are written
    """Protocol-2 pickler that writes like Python 2: str/bytes as BINSTRING (8-bit), numpy under ``numpy.core``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "").replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def py2_pickle_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def beat_times(duration_s: float, hr_bpm: float = 72.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rr = 60.0 / hr_bpm * (1 + 0.05 * rng.standard_normal(int(duration_s * hr_bpm / 60) + 5))
    t = np.cumsum(np.clip(rr, 0.4, 1.5)) + 0.3
    return t[t < duration_s - 1.0]


def ecg_like(beats: np.ndarray, n: int, fs_hz: float, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    """R spikes (Gaussian, 10 ms wide) at ``beats`` plus noise. Shapes: -> (n,) float64."""
    x = np.random.default_rng(seed).normal(0, noise, n)
    idx = np.round(beats * fs_hz).astype(int)
    half = max(2, int(0.04 * fs_hz))
    kern = np.exp(-0.5 * (np.arange(-half, half + 1) / (0.01 * fs_hz)) ** 2)
    for i in idx:
        a, b = max(0, i - half), min(n, i + half + 1)
        x[a:b] += kern[a - (i - half): b - (i - half)]
    return x


def ppg_like(beats: np.ndarray, n: int, fs_hz: float, seed: int = 0) -> np.ndarray:
    """A smooth pulse peaking PTT_S after each beat. Shapes: -> (n,) float64."""
    x = np.random.default_rng(seed + 1).normal(0, 0.01, n)
    half = int(0.4 * fs_hz)
    for b in beats:
        c = int(np.floor((b + PTT_S) * fs_hz))
        a, e = max(0, c - half), min(n, c + half + 1)
        x[a:e] += np.exp(-0.5 * ((np.arange(a, e) / fs_hz - b - PTT_S) / 0.08) ** 2)
    return x


def wesad_label_track(n: int) -> np.ndarray:
    """700-Hz WESAD codes: transient, baseline, transient, stress, transient, amusement, meditation, 6, 7."""
    parts = [(0.05, 0), (0.25, 1), (0.05, 0), (0.25, 2), (0.05, 0), (0.2, 3), (0.1, 4), (0.03, 6), (0.02, 7)]
    codes = np.concatenate([np.full(int(f * n), c) for f, c in parts])
    return np.pad(codes, (0, n - codes.size), constant_values=0).astype(np.int32)


def wesad_dict(subject: str, duration_s: float, seed: int = 0, full: bool = True) -> dict:
    n_c, n_b = int(duration_s * 700), int(duration_s * 64)
    beats = beat_times(duration_s, seed=seed)
    chest = {"ECG": ecg_like(beats, n_c, 700.0, seed=seed)[:, None]}
    wrist = {"BVP": ppg_like(beats, n_b, 64.0, seed=seed)[:, None] * 50.0}
    if full:
        rng = np.random.default_rng(seed)
        chest.update(ACC=rng.normal(0, 0.1, (n_c, 3)), EMG=rng.normal(0, 0.01, (n_c, 1)),
                     EDA=np.full((n_c, 1), 5.0), Temp=np.full((n_c, 1), 33.0, np.float32), Resp=np.zeros((n_c, 1)))
        wrist.update(ACC=rng.normal(0, 10, (int(duration_s * 32), 3)), EDA=np.full((int(duration_s * 4), 1), 0.5),
                     TEMP=np.full((int(duration_s * 4), 1), 32.0))
    return {"signal": {"chest": chest, "wrist": wrist}, "label": wesad_label_track(n_c), "subject": subject}


def write_wesad(root: Path, subjects: list[str], duration_s: float = 600.0, full: bool = True) -> Path:
    """``root/SX/SX.pkl`` (+ the other per-subject files, empty) for each subject."""
    for i, s in enumerate(subjects):
        d = root / s
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{s}.pkl").write_bytes(py2_pickle_bytes(wesad_dict(s, duration_s, seed=i, full=full)))
        for extra in ("_quest.csv", "_readme.txt", "_respiban.txt"):
            (d / f"{s}{extra}").write_text("")
    return root


def write_dalia(root: Path, subjects: list[str], duration_s: float = 240.0) -> Path:
    """``root/SX/SX.pkl`` in the PPG-DaLiA layout (activity at 4 Hz, HR label per 8-s window / 2-s shift)."""
    for i, s in enumerate(subjects):
        n_c, beats = int(duration_s * 700), beat_times(duration_s, seed=i)
        n_act = int(duration_s * 4)
        activity = np.zeros((n_act, 1), np.float64)
        for j, code in enumerate([0, 1, 2, 0, 4, 7, 8, 0]):
            activity[j * n_act // 8: (j + 1) * n_act // 8] = code
        data = {"rpeaks": np.round(beats * 700).astype(np.int64),
                "signal": {"chest": {"ACC": np.zeros((n_c, 3)), "ECG": ecg_like(beats, n_c, 700.0, seed=i)[:, None],
                                     "Resp": np.zeros((n_c, 1))},
                           "wrist": {"ACC": np.zeros((int(duration_s * 32), 3)),
                                     "BVP": ppg_like(beats, int(duration_s * 64), 64.0, seed=i)[:, None],
                                     "EDA": np.zeros((int(duration_s * 4), 1)),
                                     "TEMP": np.zeros((int(duration_s * 4), 1))}},
                "label": np.full(int((duration_s - 8) / 2) + 1, 72.0), "activity": activity,
                "questionnaire": {"AGE": 30, "Gender": " m", "HEIGHT": 180, "WEIGHT": 75, "SKIN": 3, "SPORT": 4},
                "subject": s}
        (root / s).mkdir(parents=True, exist_ok=True)
        (root / s / f"{s}.pkl").write_bytes(py2_pickle_bytes(data))
    return root


# ---------------------------------------------------------------- ISRUC-S1


ISRUC_ALL = ("F3_A2", "C3_A2", "O1_A2", "F4_A1", "C4_A1", "O2_A1", "LOC_A2", "ROC_A1", "X1", "X2", "X3")


def isruc_stages(n_epochs: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice([0, 1, 2, 3, 5], size=n_epochs, p=[0.25, 0.1, 0.35, 0.15, 0.15])


def write_isruc(root: Path, subjects: list[int], n_epochs: int = 12) -> Path:
    """``ExtractedChannels/subject{i}.mat`` (n_epochs, 6000) per channel + ``RawData/{i}/{i}_{1,2}.txt``."""
    from scipy.io import savemat

    (root / "ExtractedChannels").mkdir(parents=True, exist_ok=True)
    for i in subjects:
        rng = np.random.default_rng(i)
        mat = {ch: rng.normal(0, 20, (n_epochs, 6000)) for ch in ISRUC_ALL}
        # epoch e of every channel carries the value e in its first sample, to check epoch order
        for ch in ISRUC_ALL:
            mat[ch][:, 0] = np.arange(n_epochs)
        savemat(root / "ExtractedChannels" / f"subject{i}.mat", mat)
        d = root / "RawData" / str(i)
        d.mkdir(parents=True, exist_ok=True)
        stages = isruc_stages(n_epochs + 30, seed=i)
        for scorer in (1, 2):
            (d / f"{i}_{scorer}.txt").write_text("".join(f"{s}\n" for s in stages))
    return root


# ---------------------------------------------------------------- FOG


def fog_rows(n: int, emg_cols: tuple[int, int, int], seed: int) -> np.ndarray:
    """A headerless FilteredData table: col 0 index, 1 time, 2–26 EEG, EMG in ``emg_cols``, 60 FOG label."""
    rng = np.random.default_rng(seed)
    table = rng.normal(0, 10, (n, 61)).round(3)
    table[:, 0] = np.arange(n)
    table[:, 1] = np.arange(n) / 500.0
    for j, c in enumerate(emg_cols):
        table[:, c] = 100.0 * (j + 1) + rng.normal(0, 1, n).round(3)  # EMG1/2/3 at 100/200/300 µV offsets
    lab = np.zeros(n)
    lab[n // 3: 2 * n // 3] = 1
    table[:, 60] = lab
    return table


def write_fog(root: Path, subjects: dict[str, tuple[int, int, int]], duration_s: float = 12.0) -> Path:
    """``FilteredData/<sid>/task_1.txt``; a key ``'008/OFF_1'`` writes into the sub-folder."""
    for k, (key, cols) in enumerate(sorted(subjects.items())):
        d = root / "FilteredData" / key
        d.mkdir(parents=True, exist_ok=True)
        np.savetxt(d / "task_1.txt", fog_rows(int(duration_s * 500), cols, seed=k), delimiter=",", fmt="%.3f")
    return root


# ---------------------------------------------------------------- EDF / EDF+


def _pad(text: str, width: int) -> bytes:
    raw = text.encode("ascii")[:width]
    return raw + b" " * (width - len(raw))


def _num(x: float, width: int = 8) -> str:
    s = f"{x:.6g}" if not float(x).is_integer() else str(int(x))
    return s[:width]


def write_edf(path: Path, signals: list[tuple[str, np.ndarray, float, str]], record_s: float = 1.0,
              annotations: list[tuple[float, float, str]] | None = None, edf_plus: bool = True,
              n_records: int | None = None) -> Path:
    """Write EDF(+): ``signals`` = [(label, samples, fs_hz, unit)]; annotations go into the first record's TALs."""
    n_rec = n_records if n_records is not None else (
        int(math.ceil(max(len(x) / fs for _, x, fs, _ in signals) / record_s)) if signals else 1)
    heads, blocks = [], []
    for label, x, fs, unit in signals:
        spr = int(round(fs * record_s))
        x = np.pad(np.asarray(x, np.float64), (0, spr * n_rec - len(x)))
        pmin, pmax = float(x.min()), float(x.max())
        if pmax - pmin < 1e-9:
            pmin, pmax = pmin - 1, pmax + 1
        pmin, pmax = float(_num(pmin)), float(_num(pmax))
        gain = (pmax - pmin) / 65535
        dig = np.clip(np.round((x - pmin) / gain - 32768), -32768, 32767).astype("<i2")
        heads.append((label, "AgAgCl", unit, pmin, pmax, -32768, 32767, spr))
        blocks.append(dig.reshape(n_rec, spr))
    if edf_plus:
        tals = [f"+{r * record_s:g}\x14\x14\x00".encode() for r in range(n_rec)]
        tals[0] += b"".join(f"+{o:g}\x15{d:g}\x14{t}\x14\x00".encode() for o, d, t in (annotations or []))
        spr = (max(len(t) for t in tals) + 1) // 2 + 1
        heads.append(("EDF Annotations", "", "", -1, 1, -32768, 32767, spr))
        blocks.append(np.stack([np.frombuffer(t.ljust(2 * spr, b"\x00"), "<i2") for t in tals]))
    ns = len(heads)
    hdr = (_pad("0", 8) + _pad("X X X X", 80) + _pad("Startdate 01-JAN-2000 X X X", 80) + _pad("01.01.00", 8)
           + _pad("00.00.00", 8) + _pad(str(256 * (ns + 1)), 8) + _pad("EDF+C" if edf_plus else "", 44)
           + _pad(str(n_rec), 8) + _pad(_num(record_s), 8) + _pad(str(ns), 4))
    widths = (16, 80, 8, 8, 8, 8, 8, 80, 8, 32)
    for f_i, w in enumerate(widths):
        for h in heads:
            val = {0: h[0], 1: h[1], 2: h[2], 3: _num(h[3]), 4: _num(h[4]), 5: str(h[5]), 6: str(h[6]), 7: "",
                   8: str(h[7]), 9: ""}[f_i]
            hdr += _pad(val, w)
    data = np.concatenate(blocks, axis=1).astype("<i2").tobytes() if blocks else b""
    path.write_bytes(hdr + data)
    return path


def write_sleepedf(root: Path, nights: list[str], duration_s: float = 300.0) -> Path:
    """``SC4ssN?-PSG.edf`` (30-s records; EEG/EOG 100 Hz, EMG/resp/temp 1 Hz) + ``SC4ssN?-Hypnogram.edf``."""
    stages = ["Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 3", "Sleep stage 4", "Sleep stage R",
              "Sleep stage ?", "Movement time"]
    root.mkdir(parents=True, exist_ok=True)
    for k, night in enumerate(nights):
        rng = np.random.default_rng(k)
        n100, n1 = int(duration_s * 100), int(duration_s)
        t = np.arange(n100) / 100
        sigs = [("EEG Fpz-Cz", 20 * np.sin(2 * np.pi * 10 * t) + rng.normal(0, 5, n100), 100.0, "uV"),
                ("EEG Pz-Oz", rng.normal(0, 10, n100), 100.0, "uV"),
                ("EOG horizontal", 50 * np.sin(2 * np.pi * 0.3 * t), 100.0, "uV"),
                ("Resp oro-nasal", rng.normal(0, 1, n1), 1.0, ""), ("EMG submental", rng.normal(5, 1, n1), 1.0, "uV"),
                ("Temp rectal", np.full(n1, 37.0), 1.0, "DegC"), ("Event marker", np.zeros(n1), 1.0, "")]
        write_edf(root / f"{night}E0-PSG.edf", sigs, record_s=30.0)
        n_ep = int(duration_s // 30)
        ann = [(30.0 * e, 30.0, stages[e % len(stages)]) for e in range(n_ep - 1)]  # last epoch left unscored
        write_edf(root / f"{night}EC-Hypnogram.edf", [], record_s=0.0, annotations=ann, n_records=1)
    return root
