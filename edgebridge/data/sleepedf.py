"""Sleep-EDF (Kemp et al.; PhysioNet sleep-edfx): EDF+ polysomnograms with EDF+ hypnogram annotations.

Layout: ``<root>/**/SC4ssN?-PSG.edf`` and ``SC4ssN?-Hypnogram.edf`` (also ``ST7ssN?``): characters 3–4 are the
subject, 5 the night; PSG and hypnogram pair on their first 6 characters. Channels: ``EEG Fpz-Cz``, ``EEG Pz-Oz``,
``EOG horizontal``, ``EMG submental`` (1 Hz envelope in the cassette study, 100 Hz in the telemetry study).
Stages W, 1, 2, 3, 4, R → W, N1, N2, N3 (3 + 4, AASM), REM; ``?`` and movement time are unlabelled, as is any second
the hypnogram does not cover.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgebridge.data.edf import EdfReader
from edgebridge.data.generic import DataError, DatasetDefaults, SubjectLoader, require_dir
from edgebridge.data.recordings import UNLABELLED, Labels, Recording, Signal, register_loader

SLEEPEDF_CHANNELS = {
    "eeg": ("EEG Fpz-Cz", "EEG Pz-Oz"),
    "eog": ("EOG horizontal",),
    "emg": ("EMG submental",),
}
STAGES = {"Sleep stage W": 0, "Sleep stage 1": 1, "Sleep stage 2": 2, "Sleep stage 3": 3, "Sleep stage 4": 3,
          "Sleep stage R": 4}
CLASSES = ("W", "N1", "N2", "N3", "REM")
LABEL_FS_HZ = 1.0
_NAME = re.compile(r"^(S[CT]\d)(\d\d)(\d)")


def _night_files(root: Path) -> dict[str, tuple[Path, Path | None]]:
    """{night key 'SC4001': (psg, hypnogram or None)}, keys sorted."""
    psgs = sorted(require_dir(root, "Sleep-EDF").rglob("*-PSG.edf"))
    hyps = {p.name[:6]: p for p in sorted(root.rglob("*-Hypnogram.edf"))}
    out = {}
    for p in psgs:
        if not _NAME.match(p.name):
            raise DataError(f"{p}: file name is not SC4ssN…/ST7ssN…")
        out[p.name[:6]] = (p, hyps.get(p.name[:6]))
    if not out:
        raise DataError(f"{root}: no *-PSG.edf files")
    return dict(sorted(out.items()))


def hypnogram_codes(path: Path, n_seconds: int) -> tuple[np.ndarray, int]:
    """Per-second stage codes from a hypnogram's annotations, and the count of unknown annotation texts."""
    codes = np.full(n_seconds, UNLABELLED, dtype=np.int64)
    unknown = 0
    for ann in EdfReader(path).annotations():
        code = STAGES.get(ann.text)
        if code is None:
            unknown += ann.text not in ("Sleep stage ?", "Movement time")
            continue
        a = int(round(ann.onset_s * LABEL_FS_HZ))
        b = int(round((ann.onset_s + ann.duration_s) * LABEL_FS_HZ))
        codes[max(a, 0):min(b, n_seconds)] = code
    return codes, unknown


class SleepEdfLoader(SubjectLoader):
    """Sleep-EDF subjects (all their nights); options ``modalities``, ``require_hypnogram``."""

    name = "sleepedf"
    option_defaults = {"modalities": ("eeg", "eog"), "require_hypnogram": True}

    def defaults(self, root: Path, **options: Any) -> DatasetDefaults:
        return DatasetDefaults(new="eog", old="eeg", window_s=30.0, stride_s=30.0)

    def subjects(self, root: Path, **options: Any) -> list[str]:
        return sorted({key[:5] for key in _night_files(root)})

    def class_names(self, root: Path, **options: Any) -> tuple[str, ...]:
        return CLASSES

    def load(self, root: Path, subject: str, **options: Any) -> list[Recording]:
        opts = self.options(options)
        nights = {k: v for k, v in _night_files(root).items() if k[:5] == subject}
        if not nights:
            raise DataError(f"Sleep-EDF: no PSG file of subject {subject} under {root}")
        recs = []
        for key, (psg, hyp) in nights.items():
            if hyp is None and opts["require_hypnogram"]:
                raise DataError(f"{psg}: no matching {key}*-Hypnogram.edf")
            edf = EdfReader(psg)
            signals = {}
            for m in opts["modalities"]:
                if m not in SLEEPEDF_CHANNELS:
                    raise DataError(f"sleepedf has no modality '{m}'; known: {sorted(SLEEPEDF_CHANNELS)}")
                chans = SLEEPEDF_CHANNELS[m]
                rates = {c: edf.fs_hz(c) for c in chans}
                if len(set(rates.values())) != 1:
                    raise DataError(f"{psg}: channels of '{m}' run at different rates {rates}")
                signals[m] = Signal(np.stack([edf.signal(c) for c in chans]), rates[chans[0]], chans)
            labels, meta = None, {"file": str(psg.relative_to(root)), "night": key[5]}
            if hyp is not None:
                codes, unknown = hypnogram_codes(hyp, int(edf.duration_s * LABEL_FS_HZ))
                labels = Labels(codes, LABEL_FS_HZ, CLASSES)
                meta.update(hypnogram=str(hyp.relative_to(root)), unknown_annotations=unknown)
            recs.append(Recording(subject=subject, signals=signals, labels=labels, meta=meta))
        return recs


register_loader("sleepedf")(SleepEdfLoader())
