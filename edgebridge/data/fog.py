"""FOG (Zhang et al., Sci Data 2022): EEG + EMG of Parkinson's patients with freezing-of-gait labels, 500 Hz.

Layout: ``<root>/FilteredData/<001…012>/<task>.txt`` (patient 008 has ``OFF_1/`` and ``OFF_2/`` sub-folders):
comma-separated, no header; columns 2–26 hold 25 EEG channels, three EMG columns depend on the patient
(:data:`EMG_COLUMNS`), column 60 is the FOG label (0/1). Each task file is one Recording of its patient; splits
are by patient (``prepare(..., split_by="window")`` reproduces the paper's leaky window-level split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgebridge.data.generic import DataError, DatasetDefaults, SubjectLoader, require_dir
from edgebridge.data.recordings import Labels, Recording, Signal, register_loader
from edgebridge.data.wesad import interp, session_zscore

FS_HZ = 500.0
EEG_FIRST, N_EEG = 2, 25
LABEL_COLUMN = 60
# The paper keeps EEG positions [2, 3, 4, 5, 8, 9] of the 25 and names them F3, C3, O1, F4, C4, O2.
PAPER_EEG = {2: "F3", 3: "C3", 4: "O1", 5: "F4", 8: "C4", 9: "O2"}
EEG_NAMES = tuple(PAPER_EEG.get(j, f"EEG{j:02d}") for j in range(N_EEG))
EMG_NAMES = ("EMG1", "EMG2", "EMG3")
_A, _B = (27, 28, 31), (28, 27, 31)
EMG_COLUMNS = {"001": _A, "002": _A, "006": _A, "007": _A, "008/OFF_1": _A, "003": _B, "004": _B, "005": _B,
               "010": _B, "011": _B, "012": _B, "008/OFF_2": (27, 31, 28), "009": (28, 27, 30)}
CLASSES = ("normal", "fog")


def _emg_columns(subject: str, file: Path, subject_dir: Path) -> tuple[int, int, int]:
    rel = file.parent.relative_to(subject_dir).parts
    key = f"{subject}/{rel[0]}" if rel else subject
    if key not in EMG_COLUMNS and subject not in EMG_COLUMNS:
        raise DataError(f"{file}: no EMG column map for '{key}'; known: {sorted(EMG_COLUMNS)}")
    return EMG_COLUMNS.get(key, EMG_COLUMNS.get(subject))


def read_fog_csv(path: Path, emg_cols: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EEG (25, T), EMG (3, T) and labels (T,) of one headerless task file."""
    cols = [*range(EEG_FIRST, EEG_FIRST + N_EEG), *emg_cols, LABEL_COLUMN]
    try:
        arr = np.loadtxt(path, delimiter=",", usecols=cols, ndmin=2, dtype=np.float64)
    except (ValueError, IndexError) as err:
        raise DataError(f"{path}: unreadable or truncated CSV — need {LABEL_COLUMN + 1} columns per row ({err})") \
            from None
    labels = arr[:, -1]
    if not np.isin(labels, (0, 1)).all():
        raise DataError(f"{path}: label column {LABEL_COLUMN} holds values other than 0/1: "
                        f"{np.unique(labels[~np.isin(labels, (0, 1))])[:5]}")
    return arr[:, :N_EEG].T, arr[:, N_EEG:N_EEG + 3].T, labels.astype(np.int64)


class FogLoader(SubjectLoader):
    """FOG patients; options ``modalities`` (eeg, emg), ``eeg_channels`` ("paper": the 6 named ones, "all": 25)."""

    name = "fog"
    option_defaults = {"modalities": ("eeg", "emg"), "eeg_channels": "paper"}

    def defaults(self, root: Path, **options: Any) -> DatasetDefaults:
        return DatasetDefaults(new="emg", old="eeg", window_s=3.0, stride_s=0.3, min_label_fraction=0.8,
                               fractions={"train": 33, "val": 11, "pair": 33, "test": 22})

    def _base(self, root: Path) -> Path:
        return require_dir(root / "FilteredData", "FOG FilteredData")

    def subjects(self, root: Path, **options: Any) -> list[str]:
        ids = sorted(p.name for p in self._base(root).iterdir() if p.is_dir() and p.name.isdigit())
        if not ids:
            raise DataError(f"{self._base(root)}: no patient folders 001…012")
        return ids

    def class_names(self, root: Path, **options: Any) -> tuple[str, ...]:
        return CLASSES

    def load(self, root: Path, subject: str, **options: Any) -> list[Recording]:
        opts = self.options(options)
        sdir = self._base(root) / subject
        files = sorted(sdir.rglob("*.txt")) if sdir.is_dir() else []
        if not files:
            raise DataError(f"FOG patient {subject}: no task files under {sdir}")
        keep = [j for j in range(N_EEG) if opts["eeg_channels"] == "all" or j in PAPER_EEG]
        recs = []
        for f in files:
            eeg, emg, lab = read_fog_csv(f, _emg_columns(subject, f, sdir))
            avail = {"eeg": Signal(eeg[keep], FS_HZ, tuple(EEG_NAMES[j] for j in keep)),
                     "emg": Signal(emg, FS_HZ, EMG_NAMES)}
            unknown = [m for m in opts["modalities"] if m not in avail]
            if unknown:
                raise DataError(f"fog has no modality {unknown}; known: {sorted(avail)}")
            recs.append(Recording(subject=subject, signals={m: avail[m] for m in opts["modalities"]},
                                  labels=Labels(lab, FS_HZ, CLASSES), meta={"file": str(f.relative_to(root))}))
        return recs

    def paper_signals(self, rec: Recording, pair: tuple[str, ...], **options: Any) -> dict[str, Signal]:
        """make_FOG: EEG linear 500→200 Hz (no z-score); EMG linear 500→130 Hz + z-score over the task file.

        The paper's CWT scalograms are NormWear's input transform and are not stored in the shards.
        """
        paths = {"eeg": (200.0, False), "emg": (130.0, True)}
        out = {}
        for m in pair:
            if m not in paths:
                raise DataError(f"fog paper mode covers {sorted(paths)}, not '{m}'")
            fs_out, z = paths[m]
            sig = rec.signal(m)
            y = interp(sig.data.astype(np.float64), sig.fs_hz, fs_out)
            out[m] = Signal(session_zscore(y) if z else y, fs_out, sig.channels)
        return out


register_loader("fog")(FogLoader())
