"""Reading prepared shards back: ``PreparedWindows`` (the PairedWindows interface over shards) and ``plot_prepared``.

Shards are uncompressed ``.npz`` files; each member array is memory-mapped in place (``np.load`` cannot mmap
inside a zip, so :func:`open_shard` finds each member's data offset itself), so a split of any size costs only the
windows actually touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgebridge.data.windows import WindowBatches
from edgebridge.preprocess import Preprocessor
from edgebridge.spec import SignalSpec, SpecError

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # zip local file header, 30 bytes


def open_shard(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Memory-map every array of an uncompressed npz (compressed members are read into memory instead)."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            key = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                out[key] = np.load(zf.open(info), allow_pickle=False)
                continue
            f.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
            f.seek(info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1])
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            if dtype.hasobject:
                raise ValueError(f"{path}: member {key} holds Python objects; refusing to load")
            if int(np.prod(shape)) == 0:
                out[key] = np.zeros(shape, dtype)
            else:
                out[key] = np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape,
                                     order="F" if fortran else "C")
    return out


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def read_manifest(out: str | os.PathLike) -> dict[str, Any]:
    path = Path(out) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest.json in {out}; run `edgebridge data prepare` first")
    return json.loads(path.read_text())


class PreparedWindows(WindowBatches):
    """Paired windows of one split of a prepared data set, with the same interface as ``PairedWindows``.

    Args:
        out: the prepared folder (holds manifest.json).
        split: ``train``, ``val``, ``pair`` or ``test``.
        spec_new, spec_old: model-side SignalSpecs; their modality, window_s and stride_s must match the shards.
        labelled_only: drop windows stored without a label (only present with ``keep_unlabelled``).

    In ``live`` shards, ``get`` runs ``Preprocessor(spec, native fs)`` on each raw window, as the runtime does. In
    ``paper`` shards the windows are already the paper's model inputs: they are returned as stored (channels picked),
    and the spec's rate and length must match them.

    Shapes: get(i) -> x_new (C_new, T_new), x_old (C_old, T_old), label.
    """

    def __init__(self, out: str | os.PathLike, split: str, spec_new: SignalSpec, spec_old: SignalSpec,
                 labelled_only: bool = False) -> None:
        self.out = Path(out)
        self.manifest = read_manifest(out)
        self.split, self.spec_new, self.spec_old = split, spec_new, spec_old
        self.mode = self.manifest["mode"]
        m = self.manifest
        for key, spec in (("new", spec_new), ("old", spec_old)):
            if spec.modality != m["modalities"][key]["name"]:
                pair = (m["modalities"]["new"]["name"], m["modalities"]["old"]["name"])
                raise SpecError(f"{key} spec is '{spec.modality}' but {out} pairs new='{pair[0]}' with old='{pair[1]}'")
            if spec.window_s != m["window_s"] or spec.stride_s != m["stride_s"]:
                raise SpecError(f"{spec.modality} spec has window/stride {spec.window_s}/{spec.stride_s} s but the "
                                f"shards were cut at {m['window_s']}/{m['stride_s']} s; prepare again")
        self.shards = [sh for sh in m["shards"] if sh["split"] == split]
        self._arrays = [open_shard(self.out / sh["path"]) for sh in self.shards]
        self._rows = {k: [self._channel_rows(sh[f"channels_{k}"], s.channels) for sh in self.shards]
                      for k, s in (("new", spec_new), ("old", spec_old))}
        self._pre = {k: [self._preprocessor(s, sh[f"fs_{k}_hz"]) for sh in self.shards]
                     for k, s in (("new", spec_new), ("old", spec_old))}
        shard_of = [np.full(a["label"].shape[0], i, np.int64) for i, a in enumerate(self._arrays)]
        row_of = [np.arange(a["label"].shape[0], dtype=np.int64) for a in self._arrays]
        labels = [np.asarray(a["label"]) for a in self._arrays]
        self._shard, self._row, self._label = _cat(shard_of), _cat(row_of), _cat(labels)
        if labelled_only:
            keep = self._label >= 0
            self._shard, self._row, self._label = self._shard[keep], self._row[keep], self._label[keep]

    @staticmethod
    def _channel_rows(stored: list[str], wanted: tuple[str, ...]) -> list[int]:
        missing = [c for c in wanted if c not in stored]
        if missing:
            raise SpecError(f"channels {missing} not in the prepared channels {stored}")
        return [stored.index(c) for c in wanted]

    def _preprocessor(self, spec: SignalSpec, fs_hz: float) -> Preprocessor | None:
        if self.mode == "live":
            return Preprocessor(spec, fs_hz)
        if fs_hz != spec.fs_hz:
            raise SpecError(f"paper-mode shards hold {spec.modality} at {fs_hz} Hz (already preprocessed); "
                            f"the spec asks for {spec.fs_hz} Hz")
        return None

    def __len__(self) -> int:
        return int(self._label.size)

    @property
    def labels(self) -> np.ndarray:
        return self._label

    @property
    def subjects(self) -> np.ndarray:
        return np.array([self.shards[i]["subject"] for i in self._shard])

    @property
    def start_s(self) -> np.ndarray:
        """Window start times within their recordings. Shapes: (N,)."""
        pairs = zip(self._shard, self._row, strict=True)
        return np.array([self._arrays[s]["start_s"][r] for s, r in pairs], dtype=np.float64)

    def _stored(self, i: int, key: str) -> np.ndarray:
        s, r = int(self._shard[i]), int(self._row[i])
        return np.asarray(self._arrays[s][f"x_{key}"][r][self._rows[key][s]])

    def raw_new(self, i: int) -> np.ndarray:
        """New-modality window i as stored: raw at the native rate in live mode (what a live sensor delivers)."""
        return self._stored(i, "new")

    def raw_old(self, i: int) -> np.ndarray:
        return self._stored(i, "old")

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        s = int(self._shard[i])
        out = []
        for key in ("new", "old"):
            x, pre = self._stored(i, key), self._pre[key][s]
            out.append(pre(x) if pre is not None else np.ascontiguousarray(x, dtype=np.float32))
        return out[0], out[1], int(self._label[i])

    def fingerprint(self) -> str:
        """Identifies these windows (prepared settings, split, shards, specs) for feature-cache keys."""
        h = hashlib.sha256()
        h.update(self.spec_new.to_json().encode())
        h.update(self.spec_old.to_json().encode())
        h.update(json.dumps([self.manifest["settings"], self.split, self.shards], sort_keys=True).encode())
        h.update(self._shard.tobytes())
        h.update(self._row.tobytes())
        return h.hexdigest()[:16]


def plot_prepared(out: str | os.PathLike, png_path: str | os.PathLike, n_windows: int = 4) -> Path:
    """Plot a few paired raw windows (new above old) of the first non-empty split, to eyeball alignment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = read_manifest(out)
    shards = [sh for sh in m["shards"] if sh["n_windows"]]
    if not shards:
        raise ValueError(f"{out}: no windows to plot")
    sh = shards[0]
    arr = open_shard(Path(out) / sh["path"])
    picks = np.linspace(0, sh["n_windows"] - 1, min(n_windows, sh["n_windows"])).astype(int)
    fig, axes = plt.subplots(2, len(picks), figsize=(4 * len(picks), 4.5), squeeze=False)
    names = m["class_names"]
    for j, i in enumerate(picks):
        for row, key in enumerate(("new", "old")):
            x = np.asarray(arr[f"x_{key}"][i])
            t = float(arr["start_s"][i]) + np.arange(x.shape[1]) / sh[f"fs_{key}_hz"]
            axes[row, j].plot(t, x.T, lw=0.6)
            axes[row, j].set_title(f"{m['modalities'][key]['name']} {sh['subject']} #{i}", fontsize=8)
        lab = int(arr["label"][i])
        axes[1, j].set_xlabel(f"time (s) — label {names[lab] if 0 <= lab < len(names) else 'none'}", fontsize=8)
    fig.suptitle(f"{m['dataset']} ({m['mode']}), split {sh['split']}")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)
    return Path(png_path)
