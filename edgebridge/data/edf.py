"""A small EDF / EDF+ reader: header, signals (digital → physical) and EDF+ annotations (TALs).

EDF is a 256-byte ASCII header, 256 bytes per signal, then ``n_records`` data records of little-endian int16
samples, each record holding ``samples_per_record`` samples of every signal in turn. Signals are read through a
memory map, so one channel of an 8-hour PSG costs its own samples, never the whole file. pyedflib/mne are not
needed. EDF+D (discontinuous) files are refused rather than read as if continuous.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ANNOTATION_LABEL = "EDF Annotations"


class EdfError(ValueError):
    """The file is not valid EDF, is truncated, or asks for something it does not hold."""


@dataclass(frozen=True)
class EdfChannel:
    """One signal's header fields."""

    label: str
    transducer: str
    physical_dim: str
    physical_min: float
    physical_max: float
    digital_min: int
    digital_max: int
    prefilter: str
    samples_per_record: int

    @property
    def is_annotation(self) -> bool:
        return self.label == ANNOTATION_LABEL

    @property
    def gain(self) -> float:
        return (self.physical_max - self.physical_min) / (self.digital_max - self.digital_min)

    @property
    def offset(self) -> float:
        return self.physical_min - self.gain * self.digital_min


@dataclass(frozen=True)
class Annotation:
    """An EDF+ annotation: ``text`` from ``onset_s`` (relative to the file start) for ``duration_s`` (0 if none)."""

    onset_s: float
    duration_s: float
    text: str


def _field(raw: bytes, what: str, path: Path) -> str:
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return raw.decode("latin1").strip()


def _number(text: str, what: str, path: Path, kind: type = float) -> float:
    try:
        return kind(float(text)) if kind is int else float(text)
    except ValueError:
        raise EdfError(f"{path}: header field {what} is {text!r}, not a number") from None


class EdfReader:
    """Reads an EDF/EDF+ file lazily.

    Args:
        path: the ``.edf`` (or ``.rec``) file.

    Raises:
        EdfError: bad header, EDF+D, or a file shorter than its header promises (truncated).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise EdfError(f"EDF file not found: {self.path}")
        with open(self.path, "rb") as f:
            head = f.read(256)
            if len(head) < 256:
                raise EdfError(f"{self.path}: {len(head)} bytes, too short for an EDF header (256 bytes)")
            self.header_bytes = int(_number(_field(head[184:192], "header bytes", self.path), "bytes", self.path, int))
            self.reserved = _field(head[192:236], "reserved", self.path)
            self.n_records = int(_number(_field(head[236:244], "records", self.path), "records", self.path, int))
            self.record_duration_s = _number(_field(head[244:252], "duration", self.path), "duration", self.path)
            ns = int(_number(_field(head[252:256], "signals", self.path), "signals", self.path, int))
            self.patient = _field(head[8:88], "patient", self.path)
            self.recording = _field(head[88:168], "recording", self.path)
            self.start = _field(head[168:176], "date", self.path) + " " + _field(head[176:184], "time", self.path)
            sig = f.read(256 * ns)
        if len(sig) < 256 * ns or self.header_bytes != 256 * (ns + 1):
            raise EdfError(f"{self.path}: header declares {ns} signals and {self.header_bytes} header bytes; "
                           f"file holds {256 + len(sig)} header bytes (expected {256 * (ns + 1)})")
        if self.reserved.startswith("EDF+D"):
            raise EdfError(f"{self.path}: discontinuous EDF+D files are not supported (records are not contiguous)")
        self.channels = self._parse_channels(sig, ns)
        self._offsets = np.concatenate([[0], np.cumsum([c.samples_per_record for c in self.channels])]).astype(int)
        self.record_samples = int(self._offsets[-1])
        self._check_size()

    def _parse_channels(self, raw: bytes, ns: int) -> tuple[EdfChannel, ...]:
        widths = [16, 80, 8, 8, 8, 8, 8, 80, 8, 32]
        cols, pos = [], 0
        for w in widths:
            cols.append([_field(raw[pos + i * w: pos + (i + 1) * w], "signal", self.path) for i in range(ns)])
            pos += w * ns
        out = []
        for i in range(ns):
            ch = EdfChannel(label=cols[0][i], transducer=cols[1][i], physical_dim=cols[2][i],
                            physical_min=_number(cols[3][i], "physical min", self.path),
                            physical_max=_number(cols[4][i], "physical max", self.path),
                            digital_min=int(_number(cols[5][i], "digital min", self.path, int)),
                            digital_max=int(_number(cols[6][i], "digital max", self.path, int)),
                            prefilter=cols[7][i],
                            samples_per_record=int(_number(cols[8][i], "samples/record", self.path, int)))
            if ch.digital_max <= ch.digital_min or ch.samples_per_record < 0:
                raise EdfError(f"{self.path}: signal '{ch.label}' has digital range {ch.digital_min}..{ch.digital_max}"
                               f" and {ch.samples_per_record} samples/record")
            out.append(ch)
        return tuple(out)

    def _check_size(self) -> None:
        size = self.path.stat().st_size - self.header_bytes
        record_bytes = 2 * self.record_samples
        complete = size // record_bytes if record_bytes else 0
        if self.n_records == -1:  # allowed while recording; the file size decides
            self.n_records = int(complete)
        elif complete < self.n_records:
            raise EdfError(f"{self.path}: truncated — header promises {self.n_records} records of {record_bytes} "
                           f"bytes, file holds {complete} complete record(s)")

    @property
    def labels(self) -> list[str]:
        """Labels of the ordinary (non-annotation) signals."""
        return [c.label for c in self.channels if not c.is_annotation]

    @property
    def duration_s(self) -> float:
        return self.n_records * self.record_duration_s

    def _index(self, label: str) -> int:
        names = [c.label for c in self.channels]
        if label not in names:
            raise EdfError(f"{self.path}: no signal '{label}'; signals are {names}")
        return names.index(label)

    def fs_hz(self, label: str) -> float:
        ch = self.channels[self._index(label)]
        if self.record_duration_s <= 0:
            raise EdfError(f"{self.path}: record duration {self.record_duration_s} s gives no sample rate")
        return ch.samples_per_record / self.record_duration_s

    def _records(self) -> np.ndarray:
        if self.n_records == 0 or self.record_samples == 0:
            return np.zeros((0, self.record_samples), dtype="<i2")
        return np.memmap(self.path, dtype="<i2", mode="r", offset=self.header_bytes,
                         shape=(self.n_records, self.record_samples))

    def digital(self, label: str) -> np.ndarray:
        """Raw int16 samples of one signal. Shapes: -> (n_records · samples_per_record,)."""
        i = self._index(label)
        return np.asarray(self._records()[:, self._offsets[i]: self._offsets[i + 1]]).reshape(-1)

    def signal(self, label: str) -> np.ndarray:
        """Physical values (e.g. µV) of one signal as float32. Shapes: -> (T,)."""
        ch = self.channels[self._index(label)]
        if ch.is_annotation:
            raise EdfError(f"{self.path}: '{label}' is the annotation channel; use annotations()")
        return (self.digital(label).astype(np.float64) * ch.gain + ch.offset).astype(np.float32)

    def annotations(self) -> list[Annotation]:
        """All EDF+ annotations, without the empty per-record time-keeping entries."""
        out: list[Annotation] = []
        for i, ch in enumerate(self.channels):
            if not ch.is_annotation:
                continue
            raw = np.ascontiguousarray(self._records()[:, self._offsets[i]: self._offsets[i + 1]]).tobytes()
            for tal in raw.split(b"\x00"):
                out.extend(_parse_tal(tal, self.path))
        return sorted(out, key=lambda a: a.onset_s)


def _parse_tal(tal: bytes, path: Path) -> list[Annotation]:
    """One time-stamped annotation list: ``+onset[\\x15duration]\\x14text\\x14[text\\x14]``."""
    if not tal.strip(b"\x00"):
        return []
    parts = tal.split(b"\x14")
    stamp = parts[0].decode("latin1")
    onset_txt, _, dur_txt = stamp.partition("\x15")
    if not onset_txt or onset_txt[0] not in "+-":
        raise EdfError(f"{path}: malformed annotation onset {onset_txt!r}")
    onset = float(onset_txt)
    duration = float(dur_txt) if dur_txt else 0.0
    texts = [p.decode("utf-8", errors="replace") for p in parts[1:] if p]
    return [Annotation(onset, duration, t) for t in texts]
