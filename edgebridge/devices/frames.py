"""Incremental frame parsers for byte streams from wearable boards (serial/USB-CDC/BLE-UART), chosen by name.

A parser is fed whatever bytes arrived (``feed(b) -> [(counter, values), ...]``), keeps an incomplete tail for
the next call, and on garbage (line noise, a reset mid-frame, a reader that opened mid-stream) skips forward to
the next valid frame, counting what it threw away in ``stats``. Frames carry a sample counter so lost frames show
up as counter gaps downstream.
"""

from __future__ import annotations

import logging
import operator
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial, reduce
from typing import Protocol

import numpy as np

from edgebridge.registry import Registry

log = logging.getLogger(__name__)

Sample = tuple[int, tuple[float, ...]]


@dataclass
class FrameStats:
    """What a parser accepted and rejected."""

    frames: int = 0
    bad_frames: int = 0
    bad_bytes: int = 0


class FrameParser(Protocol):
    """Incremental parser. ``counter_modulus`` is where the counter wraps (None: it never wraps)."""

    n_channels: int
    counter_modulus: int | None
    stats: FrameStats

    def feed(self, data: bytes) -> list[Sample]: ...

    def reset(self) -> None: ...


PARSERS: Registry[Callable[..., FrameParser]] = Registry("frame parser")
CHECKSUMS: Registry[Callable[[bytes], int]] = Registry("checksum")
CHECKSUMS.add("xor", lambda b: reduce(operator.xor, b, 0))
CHECKSUMS.add("sum8", lambda b: sum(b) & 0xFF)

_STRUCT_CODES = {"int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
                 "float32": "f", "float64": "d"}
_COUNTER_CODES = {0: "", 1: "B", 2: "H", 4: "I", 8: "Q"}


@PARSERS.register("csv_line")
class CsvLineParser:
    """Text lines of comma-, tab- or space-separated numbers, ``\\n``-terminated (``\\r`` ignored).

    Args:
        n_channels: values per line (after the counter column, if any).
        counter_column: the first column is the board's sample counter; otherwise lines are numbered 0, 1, ….
        max_line_bytes: a longer run without a newline is garbage and is dropped.
    """

    counter_modulus = None

    def __init__(self, n_channels: int, counter_column: bool = False, max_line_bytes: int = 4096) -> None:
        self.n_channels = int(n_channels)
        self.counter_column = counter_column
        self.max_line_bytes = max_line_bytes
        self.stats = FrameStats()
        self._tail = b""
        self._next_counter = 0

    def reset(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> list[Sample]:
        buf = self._tail + bytes(data)
        lines = buf.split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > self.max_line_bytes:
            self.stats.bad_bytes += len(self._tail)
            self.stats.bad_frames += 1
            self._tail = b""
        out: list[Sample] = []
        for raw in lines:
            line = raw.strip()
            if line:
                sample = self._parse(line)
                if sample is None:
                    self.stats.bad_frames += 1
                    self.stats.bad_bytes += len(raw) + 1
                else:
                    out.append(sample)
        self.stats.frames += len(out)
        return out

    def _parse(self, line: bytes) -> Sample | None:
        fields = line.replace(b"\t", b",").replace(b" ", b",").split(b",")
        fields = [f for f in fields if f]
        if len(fields) != self.n_channels + int(self.counter_column):
            return None
        try:
            if self.counter_column:
                counter = int(fields[0])
                values = tuple(float(f) for f in fields[1:])
            else:
                values = tuple(float(f) for f in fields)
                counter = self._next_counter
        except ValueError:
            return None
        self._next_counter = counter + 1
        return counter, values


@PARSERS.register("binary")
class BinaryFrameParser:
    """Fixed-size binary frames: ``sync | counter (LE) | n_channels × dtype (LE) | checksum | end``.

    Args:
        n_channels: values per frame.
        dtype: value type, one of int8/uint8/int16/uint16/int32/uint32/float32/float64 (little-endian).
        sync: start-of-frame bytes (two bytes make false syncs in garbage rare).
        counter_bytes: width of the unsigned little-endian sample counter (0, 1, 2, 4 or 8); it wraps.
        scale: multiplier from raw values to physical units.
        checksum: a name in ``CHECKSUMS`` (over counter and value bytes) or None.
        end: end-of-frame bytes, or empty.
    """

    def __init__(self, n_channels: int, dtype: str = "int16", sync: bytes = b"\xa5\x5a", counter_bytes: int = 2,
                 scale: float = 1.0, checksum: str | None = "xor", end: bytes = b"\xc0") -> None:
        if dtype not in _STRUCT_CODES:
            raise KeyError(f"unknown frame dtype '{dtype}'; known: {sorted(_STRUCT_CODES)}")
        if counter_bytes not in _COUNTER_CODES:
            raise ValueError(f"counter_bytes must be one of {sorted(_COUNTER_CODES)}, got {counter_bytes}")
        if not sync:
            raise ValueError("binary frames need at least one sync byte")
        self.n_channels = int(n_channels)
        self.sync, self.end, self.scale = bytes(sync), bytes(end), float(scale)
        self.counter_bytes = counter_bytes
        self.counter_modulus = 1 << (8 * counter_bytes) if counter_bytes else None
        self._checksum = CHECKSUMS.get(checksum) if checksum else None
        self._body = struct.Struct("<" + _COUNTER_CODES[counter_bytes] + _STRUCT_CODES[dtype] * self.n_channels)
        self.frame_len = len(self.sync) + self._body.size + int(self._checksum is not None) + len(self.end)
        self.stats = FrameStats()
        self._buf = bytearray()
        self._next_counter = 0

    def reset(self) -> None:
        self._buf.clear()

    def encode(self, counter: int, values: np.ndarray | tuple[float, ...]) -> bytes:
        """One frame (for emulators and tests); values are raw (unscaled)."""
        head = (counter % self.counter_modulus,) if self.counter_modulus else ()
        body = self._body.pack(*head, *values)
        check = bytes([self._checksum(body)]) if self._checksum else b""
        return self.sync + body + check + self.end

    def _frame_at(self, i: int) -> Sample | None:
        buf, body_start = self._buf, i + len(self.sync)
        body_end = body_start + self._body.size
        if self.end and buf[self.frame_len + i - len(self.end):i + self.frame_len] != self.end:
            return None
        if self._checksum is not None and buf[body_end] != self._checksum(buf[body_start:body_end]):
            return None
        fields = self._body.unpack_from(buf, body_start)
        if self.counter_bytes:
            counter, raw = fields[0], fields[1:]
        else:
            counter, raw = self._next_counter, fields
        self._next_counter = counter + 1
        values = raw if self.scale == 1.0 else tuple(v * self.scale for v in raw)
        return counter, tuple(float(v) for v in values)

    def feed(self, data: bytes) -> list[Sample]:
        self._buf += data
        buf, out, pos, n = self._buf, [], 0, len(self._buf)
        while True:
            i = buf.find(self.sync, pos)
            if i < 0:  # keep a possible partial sync at the end
                keep = min(len(self.sync) - 1, n - pos)
                self.stats.bad_bytes += n - pos - keep
                pos = n - keep
                break
            self.stats.bad_bytes += i - pos
            if n - i < self.frame_len:
                pos = i
                break
            sample = self._frame_at(i)
            if sample is None:  # a false sync or a corrupted frame: resynchronise one byte later
                self.stats.bad_frames += 1
                self.stats.bad_bytes += 1
                pos = i + 1
            else:
                out.append(sample)
                pos = i + self.frame_len
        del buf[:pos]
        self.stats.frames += len(out)
        return out


PARSERS.add("int16_le", partial(BinaryFrameParser, dtype="int16"))
PARSERS.add("int32_le", partial(BinaryFrameParser, dtype="int32"))
PARSERS.add("float32_le", partial(BinaryFrameParser, dtype="float32"))


def make_parser(name: str, n_channels: int, **options: object) -> FrameParser:
    """Instantiate a registered parser by name, e.g. ``make_parser("binary", 4, dtype="int32", checksum="sum8")``."""
    return PARSERS.get(name)(n_channels, **options)


class CounterUnwrapper:
    """Turns wrapping device counters into a monotonic int64 count; a backwards jump counts as a reset.

    Shapes: raw: (n,) int -> (n,) int64.
    """

    def __init__(self, modulus: int | None) -> None:
        self.modulus = modulus
        self.resets = 0
        self._last_raw: int | None = None
        self._count = 0  # unwrapped value of the last sample

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.int64)
        if raw.size == 0:
            return raw
        if self._last_raw is None:
            self._last_raw, self._count = int(raw[0]) - 1, int(raw[0]) - 1
        d = np.diff(raw, prepend=self._last_raw)
        if self.modulus is not None:
            d %= self.modulus
            backwards = (d == 0) | (d > self.modulus // 2)
        else:
            backwards = d <= 0
        if backwards.any():
            self.resets += int(backwards.sum())
            log.warning("device counter jumped backwards %d time(s); continuing the count", int(backwards.sum()))
            d[backwards] = 1
        out = self._count + np.cumsum(d)
        self._count, self._last_raw = int(out[-1]), int(raw[-1])
        return out
