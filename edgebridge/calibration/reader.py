"""CalibrationReader: real preprocessed windows for INT8 calibration, with a record of where they came from.

Scales fitted on random inputs (ModelOpt's fallback without data) do not transfer to real signals, so every
reader is built from windows that went through the same ``Preprocessor(spec)`` as training and the runtime.
Windows are drawn stratified over (subject, class) so one long subject or a dominant class does not set the
ranges alone. NumPy only: readers can be built on a device, too.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from edgebridge.preprocess import Preprocessor
from edgebridge.spec import SignalSpec

log = logging.getLogger(__name__)

#: Default number of calibration windows. 256 covers every (subject, class) cell of a WESAD-sized pair split
#: several times and keeps ORT MinMax calibration of a 100M-param chain to minutes on a laptop; ranges of the
#: small chains tested here stopped moving beyond ~128 windows.
DEFAULT_CALIB_COUNT = 256
INPUT_NAME = "signal"


def stratified_indices(subjects: Sequence[Any], labels: Sequence[int], n: int, seed: int = 0) -> np.ndarray:
    """Pick up to ``n`` indices round-robin over (subject, label) cells, shuffled within each cell (seeded).

    Cells are visited in sorted order, so the choice does not depend on the order recordings were loaded.
    Shapes: subjects (N,), labels (N,) -> (min(n, N),) int64, sorted.
    """
    subjects, labels = np.asarray(subjects).astype(str), np.asarray(labels)
    if subjects.shape != labels.shape:
        raise ValueError(f"subjects and labels differ in length: {subjects.size} vs {labels.size}")
    rng = np.random.default_rng(seed)
    cells: dict[tuple[str, int], list[int]] = {}
    for i, key in enumerate(zip(subjects.tolist(), labels.tolist(), strict=True)):
        cells.setdefault(key, []).append(i)
    queues = [list(rng.permutation(cells[k])) for k in sorted(cells)]
    chosen: list[int] = []
    while len(chosen) < n and any(queues):
        for q in queues:
            if q and len(chosen) < n:
                chosen.append(int(q.pop()))
    return np.sort(np.asarray(chosen, dtype=np.int64))


class CalibrationReader:
    """Feeds calibration batches as ``{input_name: (B, C, T) float32}``; ORT ``get_next``/``rewind`` protocol.

    Args:
        windows: preprocessed model inputs. Shapes: (N, C, T) float32.
        spec: the SignalSpec they were preprocessed with (checked against the windows' shape).
        provenance: where the windows came from (source, split, subjects, class counts, indices, seed).
        batch_size: windows per ``get_next`` (1 keeps ORT's per-batch range collection exact).
        input_name: the ONNX graph input name.
    """

    def __init__(self, windows: np.ndarray, spec: SignalSpec, provenance: dict[str, Any] | None = None,
                 batch_size: int = 1, input_name: str = INPUT_NAME) -> None:
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if windows.ndim != 3 or windows.shape[1:] != spec.input_shape:
            raise ValueError(f"calibration windows must be (N, {spec.input_shape[0]}, {spec.input_shape[1]}) for "
                             f"{spec.modality}, got {tuple(windows.shape)}")
        if windows.shape[0] == 0:
            raise ValueError("calibration needs at least one window")
        if not np.all(np.isfinite(windows)):
            raise ValueError("calibration windows contain NaN/inf")
        self.windows, self.spec = windows, spec
        self.batch_size, self.input_name = int(batch_size), input_name
        self.provenance = {"n_windows": int(windows.shape[0]), "sha256": self.digest(), **(provenance or {})}
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def digest(self) -> str:
        """sha256 of the calibration tensor: which windows exactly calibrated a bundle."""
        return hashlib.sha256(self.windows.tobytes()).hexdigest()

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self), self.batch_size):
            yield {self.input_name: self.windows[start:start + self.batch_size]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self.batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None

    def as_array(self) -> np.ndarray:
        """All windows at once, e.g. ModelOpt's ``calibration_data``. Shapes: (N, C, T)."""
        return self.windows

    def as_dict(self) -> dict[str, np.ndarray]:
        return {self.input_name: self.windows}

    @classmethod
    def from_paired(cls, windows: Any, n: int = DEFAULT_CALIB_COUNT, seed: int = 0, split: str | None = None,
                    exclude: Sequence[int] = (), **kwargs: Any) -> CalibrationReader:
        """Stratified windows from a ``PairedWindows`` (new modality only, through its Preprocessor).

        Args:
            windows: a PairedWindows (``get(i)[0]`` is the preprocessed new-modality window).
            n: number of windows (DEFAULT_CALIB_COUNT).
            seed: stratified sampling seed.
            split: split name, recorded in the provenance.
            exclude: indices never to use (e.g. the bundle's held-out check windows).
        """
        keep = np.setdiff1d(np.arange(len(windows)), np.asarray(exclude, dtype=np.int64))
        if keep.size == 0:
            raise ValueError(f"no windows left for calibration in split {split!r}")
        subjects, labels = np.asarray(windows.subjects)[keep], np.asarray(windows.labels)[keep]
        idx = keep[stratified_indices(subjects, labels, n, seed)]
        x = np.stack([windows.get(int(i))[0] for i in idx])
        chosen_subjects, chosen_labels = np.asarray(windows.subjects)[idx], np.asarray(windows.labels)[idx]
        prov = {"source": "paired_windows", "split": split, "seed": seed, "requested": n,
                "indices": [int(i) for i in idx], "subjects": sorted({str(s) for s in chosen_subjects}),
                "class_counts": {str(k): v for k, v in sorted(Counter(chosen_labels.tolist()).items())},
                "method": "stratified over (subject, class), round-robin"}
        log.info("calibration: %d windows from split %s, %d subjects", len(idx), split, len(prov["subjects"]))
        return cls(x, windows.spec_new, prov, **kwargs)

    @classmethod
    def from_raw(cls, raw_windows: Sequence[np.ndarray], fs_hz: float, spec: SignalSpec,
                 provenance: dict[str, Any] | None = None, **kwargs: Any) -> CalibrationReader:
        """Windows straight from a sensor at ``fs_hz``, preprocessed by ``Preprocessor(spec, fs_hz)``.

        Shapes: raw_windows: N × (C, window_s·fs_hz).
        """
        pre = Preprocessor(spec, fs_hz)
        x = np.stack([pre(np.asarray(w)) for w in raw_windows]) if len(raw_windows) else np.zeros((0, 1, 1))
        prov = {"source": "raw_windows", "fs_hz": float(fs_hz), **(provenance or {})}
        return cls(x, spec, prov, **kwargs)
