"""PPG-DaLiA (Reiss et al., Sensors 2019): chest ECG 700 Hz + wrist PPG 64 Hz during daily activities.

Layout: ``<root>/S1 … S15/SX.pkl`` — the same RespiBAN + E4 hardware and Python-2 pickle format as WESAD, read
with the same safe unpickler. Labels: ``activity`` at 4 Hz (0 transient → unlabelled; 1 sitting … 8 working).
The ground-truth heart rate (``label``, one value per 8-s window with 2-s shift) is kept in ``Recording.meta``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgebridge.data.generic import DataError, DatasetDefaults, SubjectLoader, check_duration
from edgebridge.data.recordings import UNLABELLED, Labels, Recording, register_loader
from edgebridge.data.wesad import device_signals, load_pickle, subject_dirs

DALIA_CHANNELS: dict[str, tuple[str, str, float, tuple[str, ...]]] = {
    "ecg": ("chest", "ECG", 700.0, ("ECG",)),
    "ppg": ("wrist", "BVP", 64.0, ("BVP",)),
    "resp": ("chest", "Resp", 700.0, ("Resp",)),
    "acc": ("wrist", "ACC", 32.0, ("ACC_x", "ACC_y", "ACC_z")),
}
ACTIVITY_FS_HZ = 4.0
ACTIVITIES = ("sitting", "stairs", "table_soccer", "cycling", "driving", "lunch", "walking", "working")


class DaliaLoader(SubjectLoader):
    """PPG-DaLiA subjects; option ``modalities`` (default ecg + ppg)."""

    name = "dalia"
    option_defaults = {"modalities": ("ecg", "ppg")}

    def defaults(self, root: Path, **options: Any) -> DatasetDefaults:
        return DatasetDefaults(new="ppg", old="ecg", window_s=8.0, stride_s=2.0)

    def subjects(self, root: Path, **options: Any) -> list[str]:
        return subject_dirs(root)

    def class_names(self, root: Path, **options: Any) -> tuple[str, ...]:
        return ACTIVITIES

    def load(self, root: Path, subject: str, **options: Any) -> list[Recording]:
        opts = self.options(options)
        path = root / subject / f"{subject}.pkl"
        data = load_pickle(path)
        activity = np.asarray(data.get("activity", np.zeros(0))).reshape(-1)
        if activity.size == 0:
            raise DataError(f"{path}: no 'activity' array")
        chest_n = np.asarray(data["signal"]["chest"]["ECG"]).shape[0] if "ECG" in data["signal"].get("chest", {}) \
            else None
        duration_s = chest_n / 700.0 if chest_n else activity.size / ACTIVITY_FS_HZ
        check_duration(activity.size, ACTIVITY_FS_HZ, duration_s, f"{path.name} activity", tol_s=2.0)
        signals = device_signals(data, DALIA_CHANNELS, opts["modalities"], duration_s, path, "dalia")
        bad = (activity < 0) | (activity > len(ACTIVITIES))
        if bad.any():
            raise DataError(f"{path}: {int(bad.sum())} activity codes outside 0..{len(ACTIVITIES)}")
        codes = np.where(activity == 0, UNLABELLED, activity.astype(np.int64) - 1)
        meta = {"file": str(path.relative_to(root)),
                "hr_bpm": np.asarray(data.get("label", np.zeros(0)), dtype=np.float32).reshape(-1)}
        return [Recording(subject=subject, signals=signals, labels=Labels(codes, ACTIVITY_FS_HZ, ACTIVITIES),
                          meta=meta)]


register_loader("dalia")(DaliaLoader())
