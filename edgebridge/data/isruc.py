"""ISRUC-Sleep subgroup I: 30-s epochs at 200 Hz (EEG, EOG, chin EMG, ECG) with scorer-1 sleep stages.

Layout: ``<root>/ExtractedChannels/subject{i}.mat`` (scipy.io.loadmat; one variable per channel, shape
(n_epochs, 6000)) and ``<root>/RawData/{i}/{i}_1.txt`` (one stage per line: 0 W, 1 N1, 2 N2, 3 N3, 5 REM). By the
data set's convention the last 30 lines of the label file are dropped; the result must match the epoch count.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgebridge.data.generic import DataError, DatasetDefaults, SubjectLoader, require_dir
from edgebridge.data.recordings import UNLABELLED, Labels, Recording, Signal, register_loader
from edgebridge.data.wesad import paper_ecg

FS_HZ = 200.0
EPOCH_S = 30.0
IGNORE_LAST = 30
ISRUC_CHANNELS = {
    "eeg": ("F3_A2", "C3_A2", "O1_A2", "F4_A1", "C4_A1", "O2_A1"),
    "ecg": ("X2",),
    "eog": ("LOC_A2", "ROC_A1"),
    "emg": ("X1",),
}
CLASSES = {2: ("wake", "sleep"), 5: ("W", "N1", "N2", "N3", "REM")}
CODE_MAPS = {2: {0: 0, 1: 1, 2: 1, 3: 1, 5: 1}, 5: {0: 0, 1: 1, 2: 2, 3: 3, 5: 4}}
LABEL_FS_HZ = 1.0  # epoch labels repeated per second: exact for windows on the 30-s grid


class IsrucLoader(SubjectLoader):
    """ISRUC-S1 subjects; options ``n_classes`` (2 wake/sleep, 5 stages), ``modalities``, ``scorer`` (1 or 2)."""

    name = "isruc"
    option_defaults = {"n_classes": 2, "modalities": ("eeg", "ecg"), "scorer": 1}

    def defaults(self, root: Path, **options: Any) -> DatasetDefaults:
        return DatasetDefaults(new="ecg", old="eeg", window_s=EPOCH_S, stride_s=EPOCH_S,
                               fractions={"train": 33, "val": 11, "pair": 33, "test": 22})

    def subjects(self, root: Path, **options: Any) -> list[str]:
        mats = require_dir(root / "ExtractedChannels", "ISRUC ExtractedChannels").glob("subject*.mat")
        ids = [m.group(1) for p in mats if (m := re.fullmatch(r"subject(\d+)\.mat", p.name))]
        if not ids:
            raise DataError(f"{root / 'ExtractedChannels'}: no subject<i>.mat files")
        return sorted(ids, key=int)

    def class_names(self, root: Path, **options: Any) -> tuple[str, ...]:
        n = self.options(options)["n_classes"]
        if n not in CLASSES:
            raise ValueError(f"isruc n_classes must be one of {sorted(CLASSES)}, got {n}")
        return CLASSES[n]

    def _labels(self, root: Path, subject: str, scorer: int, n_epochs: int, n_classes: int) -> np.ndarray:
        path = root / "RawData" / subject / f"{subject}_{scorer}.txt"
        if not path.is_file():
            raise DataError(f"label file not found: {path}")
        raw = np.loadtxt(path, dtype=np.int64, ndmin=1)
        raw = raw[:-IGNORE_LAST] if raw.size > IGNORE_LAST else raw[:0]
        if raw.size != n_epochs:
            raise DataError(f"{path}: {raw.size} labels after dropping the last {IGNORE_LAST}, but the .mat holds "
                            f"{n_epochs} epochs — refusing to guess the alignment")
        codes = np.full(raw.size, UNLABELLED, dtype=np.int64)
        for src, dst in CODE_MAPS[n_classes].items():
            codes[raw == src] = dst
        return codes

    def load(self, root: Path, subject: str, **options: Any) -> list[Recording]:
        from scipy.io import loadmat

        opts = self.options(options)
        names = self.class_names(root, **opts)
        path = root / "ExtractedChannels" / f"subject{subject}.mat"
        if not path.is_file():
            raise DataError(f"subject file not found: {path}")
        wanted = [c for m in opts["modalities"] for c in ISRUC_CHANNELS[m]] if all(
            m in ISRUC_CHANNELS for m in opts["modalities"]) else None
        if wanted is None:
            raise DataError(f"isruc modalities must be among {sorted(ISRUC_CHANNELS)}, got {opts['modalities']}")
        try:
            mat = loadmat(path, variable_names=wanted)
        except (ValueError, OSError, TypeError) as err:
            raise DataError(f"{path}: unreadable or truncated .mat ({err})") from None
        missing = [c for c in wanted if c not in mat]
        if missing:
            raise DataError(f"{path}: channel variable(s) {missing} missing")
        shapes = {c: mat[c].shape for c in wanted}
        n_per_epoch = int(FS_HZ * EPOCH_S)
        if len(set(shapes.values())) != 1 or next(iter(shapes.values()))[1] != n_per_epoch:
            raise DataError(f"{path}: channels must all be (n_epochs, {n_per_epoch}) = 30 s at {FS_HZ:.0f} Hz; "
                            f"got {shapes}")
        n_epochs = next(iter(shapes.values()))[0]
        signals = {m: Signal(np.stack([mat[c].reshape(-1) for c in ISRUC_CHANNELS[m]]), FS_HZ, ISRUC_CHANNELS[m])
                   for m in opts["modalities"]}
        codes = self._labels(root, subject, opts["scorer"], n_epochs, len(names))
        labels = Labels(np.repeat(codes, int(EPOCH_S * LABEL_FS_HZ)), LABEL_FS_HZ, names)
        return [Recording(subject=subject, signals=signals, labels=labels,
                          meta={"file": str(path.relative_to(root)), "n_epochs": int(n_epochs)})]

    def paper_signals(self, rec: Recording, pair: tuple[str, ...], **options: Any) -> dict[str, Signal]:
        """make_ISRUC: EEG untouched (µV); ECG per 30-s epoch through the HuBERT-ECG path (→ 100 Hz, epoch z-score)."""
        out = {}
        for m in pair:
            sig = rec.signal(m)
            if m == "eeg":
                out[m] = sig
            elif m == "ecg":
                n = int(FS_HZ * EPOCH_S)
                epochs = [paper_ecg(sig.data[:, i:i + n].astype(np.float64), FS_HZ)
                          for i in range(0, sig.data.shape[1] - n + 1, n)]
                out[m] = Signal(np.concatenate(epochs, axis=1), 100.0, sig.channels)
            else:
                raise DataError(f"isruc paper mode covers eeg and ecg, not '{m}'")
        return out


register_loader("isruc")(IsrucLoader())
