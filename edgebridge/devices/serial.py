"""SerialSource: a board that streams frames over a serial port (USB-CDC, UART, BLE-serial bridges).

A reader thread owns the port: it reads whatever arrived, parses frames incrementally (``devices.frames``),
unwraps the board's sample counter and queues samples. When the port disappears (cable pulled, board reset) it
reconnects with exponential backoff and counts it; nothing in it raises into the caller's thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

import numpy as np

from edgebridge.devices.base import Chunk, ChunkAssembler, SourceError, SourceStats, missing_extra, register_source
from edgebridge.devices.frames import CounterUnwrapper, make_parser

log = logging.getLogger(__name__)


def _import_serial() -> Any:
    try:
        import serial  # pyserial
    except ImportError as e:
        raise missing_extra("pyserial") from e
    return serial


class SerialSource:
    """Frames from a serial port as Chunks.

    Args:
        port: device path (``/dev/ttyACM0``, ``COM3``) or a pyserial URL.
        fs_hz: the board's sample rate (a serial stream does not announce it).
        n_channels: values per frame; or give ``channels`` names.
        channels: channel names (default ``ch0, ch1, …``).
        parser: a name in ``frames.PARSERS`` (``csv_line``, ``binary``, ``int16_le``, …).
        baudrate: line rate (ignored by USB-CDC and ptys).
        reconnect_min_s / reconnect_max_s: backoff range when the port is missing or fails.
        max_pending_samples: samples kept when nobody reads; older ones are dropped (counted as a gap).
        **parser_options: passed to the parser (``dtype``, ``counter_bytes``, ``checksum``, ``scale``, ``sync``, …).
    """

    def __init__(self, port: str, fs_hz: float, n_channels: int | None = None, channels: tuple[str, ...] | None = None,
                 parser: str = "csv_line", baudrate: int = 115200, reconnect_min_s: float = 0.05,
                 reconnect_max_s: float = 2.0, max_pending_samples: int = 1 << 20, **parser_options: Any) -> None:
        if channels is None and n_channels is None:
            raise SourceError("SerialSource needs n_channels or channels")
        self.channels = tuple(channels) if channels is not None else tuple(f"ch{i}" for i in range(int(n_channels)))
        if n_channels is not None and len(self.channels) != n_channels:
            raise SourceError(f"n_channels={n_channels} but {len(self.channels)} channel names")
        self.port, self.fs_hz, self.baudrate = port, float(fs_hz), baudrate
        self.parser = make_parser(parser, len(self.channels), **parser_options)
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.max_pending_samples = max_pending_samples
        self.stats = SourceStats(extra={"open_failures": 0, "overflow_samples": 0})
        self.finished = False
        self._unwrap = CounterUnwrapper(self.parser.counter_modulus)
        self._pending: deque[tuple[np.ndarray, np.ndarray]] = deque()  # (counters (n,), values (n, C))
        self._n_pending = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._opened = threading.Event()
        self._assembler = ChunkAssembler(self.fs_hz, self.channels, self.stats)

    @property
    def is_open(self) -> bool:
        """True once the port is open (use it as a start handshake: ``Serial.open`` drops unread input)."""
        return self._opened.is_set()

    def wait_open(self, timeout_s: float) -> bool:
        return self._opened.wait(timeout_s)

    def __enter__(self) -> SerialSource:
        serial = _import_serial()
        self._serial_exc = (serial.SerialException, OSError)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(serial,), name=f"serial-{self.port}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the reader thread and release the port (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None

    def _open(self, serial: Any) -> Any:
        ser = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.05, do_not_open=True)
        ser.open()
        return ser

    def _run(self, serial: Any) -> None:
        backoff, ser, lost_once = self.reconnect_min_s, None, False
        while not self._stop.is_set():
            if ser is None:
                try:
                    ser = self._open(serial)
                except self._serial_exc as e:
                    self.stats.extra["open_failures"] += 1
                    log.debug("cannot open %s (%s); retrying in %.2f s", self.port, e, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.reconnect_max_s)
                    continue
                if lost_once:
                    self.stats.reconnects += 1
                    log.info("reconnected to %s (reconnect #%d)", self.port, self.stats.reconnects)
                self._opened.set()
            try:
                data = ser.read(max(1, ser.in_waiting))
            except self._serial_exc as e:
                log.warning("lost %s: %s; reconnecting", self.port, e)
                self._opened.clear()
                self._close_port(ser)
                ser, lost_once = None, True
                self.parser.reset()
                self._stop.wait(backoff)  # a port that opens but fails at once must not spin
                backoff = min(backoff * 2, self.reconnect_max_s)
                continue
            if data:
                backoff = self.reconnect_min_s
                self._ingest(self.parser.feed(data))
        self._close_port(ser)
        self._opened.clear()

    def _close_port(self, ser: Any) -> None:
        if ser is None:
            return
        try:
            ser.close()
        except self._serial_exc as e:
            log.debug("closing %s failed: %s", self.port, e)

    def _ingest(self, samples: list) -> None:
        if not samples:
            return
        counters = self._unwrap(np.fromiter((s[0] for s in samples), dtype=np.int64, count=len(samples)))
        values = np.array([s[1] for s in samples], dtype=np.float32)
        with self._cond:
            self._pending.append((counters, values))
            self._n_pending += len(counters)
            while self._n_pending > self.max_pending_samples:
                c, _ = self._pending.popleft()
                self._n_pending -= len(c)
                self.stats.extra["overflow_samples"] += len(c)
            self.stats.resets = self._unwrap.resets
            self._cond.notify_all()

    def read(self, timeout_s: float = 0.1) -> Chunk | None:
        """Samples received since the last call, up to the first counter gap (the rest comes next call)."""
        if not self._assembler:
            with self._cond:
                if not self._pending and not self._cond.wait_for(lambda: bool(self._pending), timeout_s):
                    return None
                blocks = list(self._pending)
                self._pending.clear()
                self._n_pending = 0
            for counters, values in blocks:
                self._assembler.add(counters, values.T)
        return self._assembler.pop()


@register_source("serial")
def _open_serial(rest: str, **options: Any) -> SerialSource:
    """``serial:/dev/ttyACM0`` with ``fs_hz=``, ``n_channels=``/``channels=``, ``parser=`` and parser options."""
    if "fs_hz" not in options:
        raise SourceError("a serial source needs fs_hz= (the port does not announce the board's rate)")
    return SerialSource(rest, **options)

