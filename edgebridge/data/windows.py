"""PairedWindows: time-aligned (new, old) windows of recordings, through the one Preprocessor; subject-wise splits.

Both modalities are cut at the same times ``k · stride_s`` from their own native samples (``windowing.window_starts``
at each rate), so pair k of a recording covers the same seconds in both sensors. Windows are preprocessed on
demand: memory stays bounded by a batch, never the data set.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from edgebridge.data.recordings import UNLABELLED, Recording
from edgebridge.preprocess import Preprocessor
from edgebridge.spec import SignalSpec, SpecError
from edgebridge.windowing import window_starts

SPLITS = ("train", "val", "pair", "test")
DEFAULT_FRACTIONS = {"train": 0.3, "val": 0.15, "pair": 0.3, "test": 0.25}


def split_subjects(subjects: Sequence[str], fractions: dict[str, float] | None = None,
                   seed: int = 0) -> dict[str, list[str]]:
    """Deterministic subject-wise split, independent of file-system order (ids are sorted before shuffling).

    Every split with a positive fraction gets at least one subject; counts are rounded largest-remainder.
    """
    fractions = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    unknown = sorted(set(fractions) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown split name(s) {unknown}; known: {list(SPLITS)}")
    ids = sorted(set(subjects))
    wanted = [s for s in SPLITS if fractions.get(s, 0) > 0]
    if len(ids) < len(wanted):
        raise ValueError(f"{len(ids)} subject(s) cannot fill the {len(wanted)} splits {wanted}: "
                         f"every split needs its own subjects")
    total = sum(fractions[s] for s in wanted)
    exact = {s: fractions[s] / total * len(ids) for s in wanted}
    counts = {s: max(1, int(exact[s])) for s in wanted}
    by_remainder = sorted(wanted, key=lambda s: exact[s] - int(exact[s]), reverse=True)
    i = 0
    while sum(counts.values()) < len(ids):
        counts[by_remainder[i % len(wanted)]] += 1
        i += 1
    while sum(counts.values()) > len(ids):
        largest = max(wanted, key=lambda s: counts[s])
        counts[largest] -= 1
    order = np.random.default_rng(seed).permutation(len(ids))
    out, pos = {s: [] for s in SPLITS}, 0
    for s in wanted:
        out[s] = sorted(ids[j] for j in order[pos:pos + counts[s]])
        pos += counts[s]
    return out


@dataclass(frozen=True)
class WindowIndex:
    """Where pair ``i`` lives: recording number, window number k (start time k·stride_s), label."""

    recording: np.ndarray
    k: np.ndarray
    label: np.ndarray


class WindowBatches:
    """``batches()`` for any window set with ``__len__`` and ``get(i) -> (x_new, x_old, label)``."""

    def batches(self, batch_size: int, indices: np.ndarray | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Preprocessed batches in index order. Shapes: -> (B, C_new, T_new), (B, C_old, T_old), (B,)."""
        indices = np.arange(len(self)) if indices is None else np.asarray(indices)
        for start in range(0, indices.size, batch_size):
            items = [self.get(int(i)) for i in indices[start:start + batch_size]]
            yield (np.stack([a for a, _, _ in items]), np.stack([b for _, b, _ in items]),
                   np.array([c for _, _, c in items], dtype=np.int64))


class PairedWindows(WindowBatches):
    """Aligned (new, old) windows of a set of recordings.

    Args:
        recordings: recordings holding both modalities.
        spec_new, spec_old: the two models' SignalSpecs; window_s and stride_s must agree.
        labelled_only: drop windows whose label is undefined or not constant (for supervised splits).

    Shapes: get(i) -> x_new (C_new, T_new), x_old (C_old, T_old), label.
    """

    def __init__(self, recordings: Sequence[Recording], spec_new: SignalSpec, spec_old: SignalSpec,
                 labelled_only: bool = False) -> None:
        if spec_new.window_s != spec_old.window_s or spec_new.stride_s != spec_old.stride_s:
            raise SpecError(f"paired windows need one window and stride: new {spec_new.window_s}/{spec_new.stride_s} s "
                            f"vs old {spec_old.window_s}/{spec_old.stride_s} s")
        self.recordings = list(recordings)
        self.spec_new, self.spec_old = spec_new, spec_old
        self._pre_new = [Preprocessor(spec_new, r.signal(spec_new.modality).fs_hz) for r in self.recordings]
        self._pre_old = [Preprocessor(spec_old, r.signal(spec_old.modality).fs_hz) for r in self.recordings]
        self.index = self._build_index(labelled_only)

    def _n_windows(self, rec: Recording) -> int:
        counts = []
        for spec in (self.spec_new, self.spec_old):
            sig = rec.signal(spec.modality)
            counts.append(window_starts(sig.data.shape[1], spec.window_samples(sig.fs_hz),
                                        spec.stride_samples(sig.fs_hz)).size)
        return min(counts)

    def _build_index(self, labelled_only: bool) -> WindowIndex:
        recs, ks, labels = [], [], []
        for r_i, rec in enumerate(self.recordings):
            n = self._n_windows(rec)
            k = np.arange(n)
            if rec.labels is not None:
                lab = np.array([rec.labels.window_label(j * self.spec_new.stride_s, self.spec_new.window_s)
                                for j in k], dtype=np.int64)
            else:
                lab = np.full(n, UNLABELLED, dtype=np.int64)
            keep = lab != UNLABELLED if labelled_only else np.ones(n, bool)
            recs.append(np.full(keep.sum(), r_i))
            ks.append(k[keep])
            labels.append(lab[keep])

        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, np.int64)

        return WindowIndex(cat(recs).astype(np.int64), cat(ks).astype(np.int64), cat(labels).astype(np.int64))

    def __len__(self) -> int:
        return int(self.index.k.size)

    @property
    def labels(self) -> np.ndarray:
        return self.index.label

    @property
    def subjects(self) -> np.ndarray:
        return np.array([self.recordings[i].subject for i in self.index.recording])

    def _raw(self, r_i: int, k: int, spec: SignalSpec) -> np.ndarray:
        sig = self.recordings[r_i].signal(spec.modality)
        w, s = spec.window_samples(sig.fs_hz), spec.stride_samples(sig.fs_hz)
        return sig.select(spec.channels)[:, k * s: k * s + w]

    def raw_new(self, i: int) -> np.ndarray:
        """Unprocessed new-modality window i at the recording's rate (what a live sensor would deliver)."""
        return self._raw(int(self.index.recording[i]), int(self.index.k[i]), self.spec_new)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        r_i, k = int(self.index.recording[i]), int(self.index.k[i])
        x_new = self._pre_new[r_i](self._raw(r_i, k, self.spec_new))
        x_old = self._pre_old[r_i](self._raw(r_i, k, self.spec_old))
        return x_new, x_old, int(self.index.label[i])

    def fingerprint(self) -> str:
        """Identifies the windows (subjects, window positions, specs) for feature-cache keys."""
        import hashlib

        h = hashlib.sha256()
        h.update(self.spec_new.to_json().encode())
        h.update(self.spec_old.to_json().encode())
        for rec in self.recordings:
            h.update(rec.subject.encode())
            for spec in (self.spec_new, self.spec_old):
                sig = rec.signal(spec.modality)
                h.update(f"{sig.fs_hz}:{sig.data.shape}".encode())
                h.update(np.ascontiguousarray(sig.data[:, :: max(1, sig.data.shape[1] // 4096)]).tobytes())
        h.update(self.index.recording.tobytes())
        h.update(self.index.k.tobytes())
        return h.hexdigest()[:16]
