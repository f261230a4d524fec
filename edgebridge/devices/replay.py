"""ReplaySource: a recorded signal played back as if it came from a device (demo, tests, offline evaluation).

Played unthrottled it is the fastest way to push a recording through the live runtime; played at 1× it paces
chunks by the wall clock, so latency and drop behaviour can be studied without hardware.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgebridge.devices.base import Chunk, SourceError, SourceStats, register_source

if TYPE_CHECKING:  # the data package (and its loaders) is not needed on a device
    from edgebridge.data.recordings import Recording

log = logging.getLogger(__name__)

TIME_COLUMNS = ("t", "t_s", "time", "time_s", "timestamp", "timestamp_s")


class ReplaySource:
    """Plays a ``(C, T)`` array chunk by chunk.

    Args:
        data: the samples.
        fs_hz: their rate.
        channels: channel names (default ``ch0, ch1, …``).
        realtime: pace chunks by the wall clock (1×); False plays as fast as ``read`` is called.
        chunk_samples: fixed chunk size, or ``(lo, hi)`` for random sizes drawn uniformly from ``lo..hi``.
        seed: seed of the random chunk sizes.
        loop: start again at the end (the counter keeps increasing, so no gap is reported).

    Shapes: data: (C, T).
    """

    def __init__(self, data: np.ndarray, fs_hz: float, channels: tuple[str, ...] | None = None, *,
                 realtime: bool = False, chunk_samples: int | tuple[int, int] = 32, seed: int = 0,
                 loop: bool = False) -> None:
        data = np.asarray(data, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] == 0:
            raise SourceError(f"replay data must be a non-empty (C, T) array, got shape {data.shape}")
        self.data = data
        self.fs_hz = float(fs_hz)
        self.channels = tuple(channels) if channels is not None else tuple(f"ch{i}" for i in range(data.shape[0]))
        if len(self.channels) != data.shape[0]:
            raise SourceError(f"{data.shape[0]} rows but {len(self.channels)} channel names")
        lo, hi = (chunk_samples, chunk_samples) if isinstance(chunk_samples, int) else chunk_samples
        if not 1 <= lo <= hi:
            raise SourceError(f"chunk_samples must be >= 1 (or a (lo, hi) range), got {chunk_samples}")
        self._lo, self._hi = int(lo), int(hi)
        self.realtime = realtime
        self.loop = loop
        self._rng = np.random.default_rng(seed)
        self._pos = 0  # next sample index into data
        self._counter = 0  # samples delivered so far
        self._t0_wall: float | None = None
        self.finished = False
        self.stats = SourceStats()

    @classmethod
    def from_recording(cls, recording: Recording, modality: str, channels: tuple[str, ...] | None = None,
                       **options: Any) -> ReplaySource:
        """Replay one modality of a Recording (optionally a subset of its channels, in that order)."""
        sig = recording.signal(modality)
        chans = tuple(channels) if channels is not None else sig.channels
        return cls(sig.select(chans), sig.fs_hz, chans, **options)

    @classmethod
    def from_file(cls, path: str | Path, fs_hz: float | None = None, **options: Any) -> ReplaySource:
        """Replay an ``.npz`` (keys ``data`` (C, T), ``fs_hz``, optional ``channels``) or a ``.csv`` file.

        A CSV has a header row, one column per channel and a time column (named one of ``TIME_COLUMNS``, else the
        first column); the rate is ``fs_hz`` when given, else 1 / median time step.
        """
        path = Path(path)
        if not path.exists():
            raise SourceError(f"replay file not found: {path}")
        if path.suffix == ".npz":
            data, file_fs, chans = _read_npz(path)
        elif path.suffix in (".csv", ".tsv", ".txt"):
            data, file_fs, chans = _read_csv(path)
        else:
            raise SourceError(f"cannot replay '{path.suffix}' files; use .npz (data, fs_hz, channels) or .csv")
        if fs_hz is None and file_fs is None:
            raise SourceError(f"{path}: no sample rate in the file; pass fs_hz")
        return cls(data, float(fs_hz if fs_hz is not None else file_fs), chans, **options)

    def __enter__(self) -> ReplaySource:
        self._t0_wall = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finished = True

    def _next_size(self) -> int:
        return int(self._rng.integers(self._lo, self._hi + 1)) if self._hi > self._lo else self._lo

    def read(self, timeout_s: float = 0.1) -> Chunk | None:
        """Next chunk; None at the end (``finished`` is then True) or, at 1×, when it is not due within timeout."""
        if self.finished:
            return None
        if self._pos >= self.data.shape[1]:
            if not self.loop:
                self.finished = True
                return None
            self._pos = 0
        n = min(self._next_size(), self.data.shape[1] - self._pos)
        if self.realtime:
            if self._t0_wall is None:
                self._t0_wall = time.monotonic()
            wait_s = self._t0_wall + (self._counter + n) / self.fs_hz - time.monotonic()
            if wait_s > timeout_s:
                time.sleep(max(timeout_s, 0.0))
                return None
            if wait_s > 0:
                time.sleep(wait_s)
        block = self.data[:, self._pos:self._pos + n]
        chunk = Chunk.from_counter(block.copy(), self.fs_hz, self.channels, self._counter)
        self._pos += n
        self._counter += n
        self.stats.samples += n
        self.stats.chunks += 1
        return chunk


def _read_npz(path: Path) -> tuple[np.ndarray, float | None, tuple[str, ...] | None]:
    with np.load(path, allow_pickle=False) as z:
        if "data" not in z:
            raise SourceError(f"{path}: an .npz replay file needs a 'data' array (C, T); it has {sorted(z.files)}")
        data = np.asarray(z["data"], dtype=np.float32)
        fs = float(z["fs_hz"]) if "fs_hz" in z else None
        chans = tuple(str(c) for c in z["channels"]) if "channels" in z else None
    return data, fs, chans


def _read_csv(path: Path) -> tuple[np.ndarray, float | None, tuple[str, ...]]:
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip()
    delim = "\t" if "\t" in header else ","
    names = [h.strip() for h in header.split(delim)]
    table = np.loadtxt(path, delimiter=delim, skiprows=1, ndmin=2, dtype=np.float64)
    if table.shape[1] != len(names):
        raise SourceError(f"{path}: header has {len(names)} columns but rows have {table.shape[1]}")
    lower = [n.lower() for n in names]
    t_col = next((lower.index(n) for n in TIME_COLUMNS if n in lower), 0)
    t = table[:, t_col]
    fs = None
    if t.size > 1:
        dt = float(np.median(np.diff(t)))
        if dt <= 0:
            raise SourceError(f"{path}: time column '{names[t_col]}' is not increasing")
        fs = 1.0 / dt
        fs = float(round(fs)) if abs(fs - round(fs)) < 1e-4 * fs else fs  # printed times lose the last digits
    keep = [i for i in range(len(names)) if i != t_col]
    return table[:, keep].T.astype(np.float32), fs, tuple(names[i] for i in keep)


@register_source("file")
def _open_file(rest: str, **options: Any) -> ReplaySource:
    """``file:<path>``: replay unthrottled unless ``realtime=True``."""
    return ReplaySource.from_file(rest, **options)


@register_source("replay")
def _open_replay(rest: str, **options: Any) -> ReplaySource:
    """``replay:<path>`` plays a file at 1×; ``replay:`` with ``data=``/``fs_hz=`` options plays an array."""
    options.setdefault("realtime", True)
    if rest:
        return ReplaySource.from_file(rest, **options)
    if "data" not in options or "fs_hz" not in options:
        raise SourceError("'replay:' without a path needs data=(C, T) array and fs_hz= options")
    return ReplaySource(options.pop("data"), options.pop("fs_hz"), **options)
