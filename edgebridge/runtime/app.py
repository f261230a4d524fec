"""The stream application: a bundle and a source URI in, one prediction per hop out to sinks, until stopped.

``run_stream`` is what ``edgebridge stream BUNDLE --source URI`` calls; ``stream`` is the same pipeline as a Python
iterator. The bundle's SignalSpec drives everything (window, hop, rate, channels): nothing here takes a window or
rate setting, and a source whose channel count or rate does not fit the model raises before streaming starts.

Source URIs are ``scheme:target`` with optional ``?key=value&…`` device settings (never model settings), e.g.
``brainflow:synthetic``, ``brainflow:cyton?serial_port=/dev/ttyUSB0``,
``serial:/dev/ttyACM0?fs_hz=250&parser=int16_le``, ``lsl:MyPPG``, ``file:rec.npz`` (as fast as possible) or
``file:rec.npz?realtime=true&loop=true``. Live sources are re-opened with backoff when they fail or fall silent;
the outage becomes a counter gap, so windows spanning it are flagged ``gap`` and not scored, and the process keeps
running.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from edgebridge.devices.base import Chunk, Source, SourceError, SourceStats, open_source, parse_uri
from edgebridge.export.bundle import LoadedBundle, load_bundle, load_check_windows, open_bundle
from edgebridge.runtime import precision as auto_precision
from edgebridge.runtime.quality import QualityConfig
from edgebridge.runtime.sinks import CallbackSink, Sink, open_sink
from edgebridge.runtime.status import StatusLine, StatusSnapshot
from edgebridge.runtime.stream import Prediction, StreamRunner
from edgebridge.spec import SignalSpec, SpecError

log = logging.getLogger(__name__)

SourceLike = str | Source | Callable[[], Source]
SinkLike = str | Sink | Callable[[Prediction], Any]
#: Sink schemes whose constructor needs the class names (a CSV header, an LSL channel list).
SINKS_WITH_CLASS_NAMES = ("csv", "lsl")
#: URI settings that are strings by nature (never turned into numbers or lists): paths, addresses, hex bytes.
RAW_SETTINGS = frozenset({"file", "serial_port", "mac_address", "ip_address", "serial_number", "other_info", "name",
                          "source_id", "stream_type", "sync", "end", "master_board"})


def _coerce(text: str) -> Any:
    """URI query value -> bool / int / float / list (comma-separated) / str."""
    if "," in text:
        return [_coerce(t) for t in text.split(",") if t]
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        with contextlib.suppress(ValueError):
            return cast(text)
    return text


def split_source_uri(uri: str) -> tuple[str, dict[str, Any]]:
    """``"serial:/dev/ttyACM0?fs_hz=250&parser=int16_le"`` -> ``("serial:/dev/ttyACM0", {"fs_hz": 250, ...})``."""
    base, sep, query = uri.rpartition("?")
    if not sep or "=" not in query:
        return uri, {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError as e:
        raise SourceError(f"source URI '{uri}': cannot parse the settings after '?': {e}") from e
    return base, {k: v if k in RAW_SETTINGS else _coerce(v) for k, v in pairs}


def _brainflow_defaults(options: dict[str, Any], spec: SignalSpec) -> None:
    options.setdefault("modality", spec.modality)  # read the rows BrainFlow lists for the model's modality
    if isinstance(options.get("config"), str):
        options["config"] = (options["config"],)
    if isinstance(options.get("rows"), int):
        options["rows"] = [options["rows"]]


def _serial_defaults(options: dict[str, Any], spec: SignalSpec) -> None:
    if "n_channels" not in options and "channels" not in options:
        options["n_channels"] = spec.n_channels  # a frame layout that does not match fails to parse, loudly
    for key in ("sync", "end"):  # binary frame markers are given in hex in a URI: sync=a55a&end=c0
        if isinstance(options.get(key), str):
            try:
                options[key] = bytes.fromhex(options[key])
            except ValueError as e:
                raise SourceError(f"serial setting {key}={options[key]!r} must be hex bytes, e.g. a55a") from e
    if str(options.get("checksum", "")).lower() == "none":
        options["checksum"] = None


#: Per-scheme defaults taken from the bundle's SignalSpec (device settings the model implies).
SCHEME_DEFAULTS: dict[str, Callable[[dict[str, Any], SignalSpec], None]] = {
    "brainflow": _brainflow_defaults, "serial": _serial_defaults}


class ChannelPicker:
    """A source restricted to some of its channels, in a given order (names or row indices)."""

    def __init__(self, source: Source, picks: Sequence[str | int]) -> None:
        names = list(source.channels)
        rows = []
        for p in picks:
            if isinstance(p, int) or str(p).isdigit():
                if not 0 <= int(p) < len(names):
                    raise SpecError(f"channel index {p} out of range; the source has {len(names)}: {names}")
                rows.append(int(p))
            elif p in names:
                rows.append(names.index(p))
            else:
                raise SpecError(f"no channel {p!r} in the source; its channels are {names}")
        self.source, self.rows = source, rows
        self.channels = tuple(names[i] for i in rows)
        self.fs_hz = float(source.fs_hz)
        self.realtime = getattr(source, "realtime", True)  # an unthrottled replay stays lossless when picked from

    @property
    def finished(self) -> bool:
        return self.source.finished

    @property
    def stats(self) -> SourceStats:
        return self.source.stats

    def __enter__(self) -> ChannelPicker:
        self.source.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.source.__exit__(*exc)

    def read(self, timeout_s: float = 0.1) -> Chunk | None:
        chunk = self.source.read(timeout_s)
        if chunk is None:
            return None
        return Chunk(chunk.data[self.rows], chunk.t_s, chunk.fs_hz, self.channels, chunk.counter)


def _device_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'the device went away' (BrainFlow's own class only once brainflow is loaded)."""
    import sys

    errors: list[type[BaseException]] = [SourceError, OSError, RuntimeError]
    exit_codes = sys.modules.get("brainflow.exit_codes")
    if exit_codes is not None:
        errors.append(exit_codes.BrainFlowError)
    return tuple(errors)


class ReconnectingSource:
    """Re-creates a live source when ``read`` fails or no sample arrives for ``stall_s``, with exponential backoff.

    Counters continue across reconnects: the samples missed meanwhile (estimated from the wall clock) become a
    counter gap, which the windower fills with NaN, so windows spanning the outage are flagged and not scored.
    The first open is not retried: a wrong port or board name should fail at once.
    """

    def __init__(self, factory: Callable[[], Source], stall_s: float = 5.0, backoff_min_s: float = 0.1,
                 backoff_max_s: float = 5.0) -> None:
        self._factory, self.stall_s = factory, stall_s
        self.backoff_min_s, self.backoff_max_s = backoff_min_s, backoff_max_s
        self._src = factory()
        self.fs_hz, self.channels = float(self._src.fs_hz), tuple(self._src.channels)
        self.reconnects, self._samples, self._chunks, self._next, self._offset = 0, 0, 0, 0, 0
        self._last_data = self._lost_since = time.monotonic()
        self._rebase = False
        self._interrupt = threading.Event()

    @property
    def finished(self) -> bool:
        return bool(self._src.finished)

    @property
    def stats(self) -> SourceStats:
        inner = self._src.stats
        return SourceStats(samples=self._samples, chunks=self._chunks, gaps=inner.gaps, gap_samples=inner.gap_samples,
                           reconnects=self.reconnects + inner.reconnects, resets=inner.resets, extra=dict(inner.extra))

    def __enter__(self) -> ReconnectingSource:
        self._interrupt.clear()
        self._src.__enter__()
        self._last_data = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self._interrupt.set()
        self._src.__exit__(None, None, None)

    def interrupt(self) -> None:
        """Abandon a reconnect in progress (called when the stream stops)."""
        self._interrupt.set()

    def read(self, timeout_s: float = 0.1) -> Chunk | None:
        try:
            chunk = self._src.read(timeout_s)
        except _device_errors() as e:
            self._reconnect(f"{type(e).__name__}: {e}")
            return None
        now = time.monotonic()
        if chunk is None:
            if not self._src.finished and now - self._last_data > self.stall_s:
                self._reconnect(f"no samples for {self.stall_s:.1f} s")
            return None
        if self._rebase:
            lost = max(0, round((now - self._lost_since) * self.fs_hz) - chunk.n_samples)
            self._offset, self._rebase = self._next + lost - chunk.counter, False
        self._last_data = now
        counter = chunk.counter + self._offset
        self._next = counter + chunk.n_samples
        self._samples += chunk.n_samples
        self._chunks += 1
        return Chunk.from_counter(chunk.data, self.fs_hz, self.channels, counter)

    def _reconnect(self, why: str) -> None:
        log.warning("source lost (%s); reconnecting", why)
        self._lost_since = self._last_data
        with contextlib.suppress(*_device_errors()):  # the old device is gone; closing it may fail too
            self._src.__exit__(None, None, None)
        backoff = self.backoff_min_s
        while not self._interrupt.is_set():
            try:
                src = self._factory()
                src.__enter__()
            except _device_errors() as e:
                log.warning("reconnect failed (%s); retrying in %.1f s", e, backoff)
                self._interrupt.wait(backoff)
                backoff = min(2 * backoff, self.backoff_max_s)
                continue
            if float(src.fs_hz) != self.fs_hz or len(src.channels) != len(self.channels):
                src.__exit__(None, None, None)
                raise SourceError(f"the source came back as {len(src.channels)} ch at {src.fs_hz} Hz, not "
                                  f"{len(self.channels)} ch at {self.fs_hz} Hz")
            self._src, self._rebase = src, True
            self._last_data = time.monotonic()
            self.reconnects += 1
            log.info("source reconnected (#%d)", self.reconnects)
            return


def open_stream_bundle(bundle: str | Path | LoadedBundle, precision: str = "auto", provider: str | None = None,
                       threads: int | None = None) -> LoadedBundle:
    """Load a bundle for streaming. ``precision="auto"`` times the trusted precisions on this device and keeps the
    fastest (``runtime.precision``). ORT threads never busy-wait between windows (``spinning=False``)."""
    if isinstance(bundle, LoadedBundle):
        return bundle
    manifest = open_bundle(bundle)

    def load(p: str) -> LoadedBundle:
        return load_bundle(bundle, precision=p, provider=provider, verify=False, threads=threads, spinning=False)

    if precision != "auto":
        return load(precision)
    sample = load_check_windows(Path(bundle), manifest)["x_new"][:1]
    return auto_precision.fastest(Path(bundle), manifest, load, provider, sample)[0]


class LiveStream:
    """Bundle + source as one context manager: ``with LiveStream(b, "brainflow:synthetic") as ls: for p in ls: …``.

    Args:
        bundle: bundle directory or a ``LoadedBundle``.
        source: URI (``scheme:target?device=settings``), a Source object, or a factory ``() -> Source`` (factories
            and URIs get reconnection; a Source object is used as is).
        precision / provider / threads: which model file and ONNX Runtime provider (see ``open_stream_bundle``).
        channels: source channels (names or indices) feeding the model's channels, in order.
        source_options: extra keyword settings for the source (merged over the URI's ``?`` settings).
        quality: quality-check thresholds. queue_size: windows waiting before the oldest is dropped.
        stall_s: a live source silent this long is re-opened (default: max(5 s, 2 hops)).
    """

    def __init__(self, bundle: str | Path | LoadedBundle, source: SourceLike, *, precision: str = "auto",
                 provider: str | None = None, channels: Sequence[str | int] | str | None = None,
                 source_options: dict[str, Any] | None = None, threads: int | None = None,
                 quality: QualityConfig | None = None, queue_size: int = 4, stall_s: float | None = None) -> None:
        self.bundle = open_stream_bundle(bundle, precision, provider, threads)
        spec = self.spec = self.bundle.spec
        self.class_names = self.bundle.class_names
        self.source_name = source if isinstance(source, str) else type(source).__name__
        if isinstance(channels, str):
            channels = [c for c in channels.split(",") if c]
        factory = self._factory(source, spec, channels, source_options or {})
        first = factory() if factory is not None else source
        unthrottled = getattr(first, "realtime", True) is False  # a file replayed as fast as possible
        if factory is None or unthrottled:
            self.source = first
        else:
            pending = [first]  # the source built for the checks is the one first opened

            def reuse_then_new() -> Source:
                return pending.pop() if pending else factory()

            self.source = ReconnectingSource(reuse_then_new, stall_s=stall_s or max(5.0, 2 * spec.stride_s))
        n = len(self.source.channels)
        if n != spec.n_channels:
            raise SpecError(f"source has {n} channel(s) {list(self.source.channels)} but the model takes "
                            f"{spec.n_channels} {list(spec.channels)}; pick {spec.n_channels} with --channels "
                            f"(channels=...), e.g. --channels {','.join(self.source.channels[:spec.n_channels])}")
        self.runner = StreamRunner(spec, self.bundle.backend, self.source, self.class_names, queue_size=queue_size,
                                   lossless=unthrottled, quality=quality)
        self.t_start = math.nan

    @staticmethod
    def _factory(source: SourceLike, spec: SignalSpec, channels: Sequence[str | int] | None,
                 options: dict[str, Any]) -> Callable[[], Source] | None:
        if isinstance(source, str):
            base, query = split_source_uri(source)
            scheme, _ = parse_uri(base)
            opts = {**query, **options}
            if scheme in SCHEME_DEFAULTS:
                SCHEME_DEFAULTS[scheme](opts, spec)
            make = lambda: open_source(base, **opts)  # noqa: E731
        elif callable(source) and not hasattr(source, "read"):
            make = source
        else:
            return (lambda: ChannelPicker(source, channels)) if channels else None
        return (lambda: ChannelPicker(make(), channels)) if channels else make

    def __enter__(self) -> LiveStream:
        self.source.__enter__()
        self.t_start = time.monotonic()
        self.runner.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.source.__exit__(None, None, None)

    def stop(self) -> None:
        """Stop acquisition and end iteration; thread-safe, callable from a signal handler."""
        interrupt = getattr(self.source, "interrupt", None)
        if interrupt is not None:
            interrupt()
        self.runner.stop()

    def __iter__(self) -> Iterator[Prediction]:
        return iter(self.runner)

    @property
    def samples(self) -> int:
        return int(self.source.stats.samples)

    def snapshot(self, e2e_ms: Sequence[float] = (), last_label: str | None = None) -> StatusSnapshot:
        """Counters for the status line; call from the thread that iterates the stream."""
        s = self.runner.stats
        elapsed = max(time.monotonic() - self.t_start, 1e-9) if math.isfinite(self.t_start) else 0.0
        p50, p99 = (np.percentile(e2e_ms, [50, 99]) if len(e2e_ms) else (s.latency_ms_p50, s.latency_ms_p99))
        return StatusSnapshot(elapsed, self.samples / elapsed if elapsed else 0.0, s.windows, s.scored, s.flagged,
                              s.drops, s.reconnects, float(p50), float(p99), last_label)


def stream(bundle: str | Path | LoadedBundle, source: SourceLike, *, precision: str = "auto",
           provider: str | None = None, channels: Sequence[str | int] | str | None = None,
           max_windows: int | None = None, stop_event: threading.Event | None = None,
           **options: Any) -> Iterator[Prediction]:
    """Predictions of a live source as an iterator: ``for p in stream("bundle/", "brainflow:synthetic"): …``.

    Setup (bundle, source, channel/rate checks) happens here, so a mismatch raises at the call; the source opens
    on the first ``next`` and closes when the iterator ends or is closed. ``options`` go to ``LiveStream``.
    """
    live = LiveStream(bundle, source, precision=precision, provider=provider, channels=channels, **options)
    return _iterate(live, max_windows, stop_event)


def _iterate(live: LiveStream, max_windows: int | None, stop_event: threading.Event | None) -> Iterator[Prediction]:
    with live, _watch(stop_event, live.stop):
        for n, pred in enumerate(live, 1):
            yield pred
            if max_windows is not None and n >= max_windows:
                return


@contextlib.contextmanager
def _watch(event: threading.Event | None, on_set: Callable[[], None], tick: Callable[[], None] | None = None,
           interval_s: float = 0.25) -> Iterator[None]:
    """A helper thread that calls ``on_set`` once ``event`` is set and ``tick`` every ``interval_s``."""
    if event is None and tick is None:
        yield
        return
    done = threading.Event()

    def loop() -> None:
        while not done.wait(interval_s):
            if tick is not None:
                tick()
            if event is not None and event.is_set():
                on_set()
                return

    thread = threading.Thread(target=loop, name="edgebridge-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(1.0)


def _open_sinks(stack: contextlib.ExitStack, sinks: Sequence[SinkLike], class_names: Sequence[str]) -> list[Sink]:
    out = []
    for s in sinks:
        if isinstance(s, Sink):
            sink = s
        elif isinstance(s, str):
            scheme = s.partition(":")[0]
            sink = open_sink(s, class_names=class_names) if scheme in SINKS_WITH_CLASS_NAMES else open_sink(s)
        elif callable(s):
            sink = CallbackSink(s)
        else:
            raise TypeError(f"a sink is a URI ('jsonl:-', 'csv:out.csv', 'lsl:name'), a Sink or a callable, got {s!r}")
        out.append(stack.enter_context(sink))
    return out


@contextlib.contextmanager
def _signals_stop(stop: Callable[[str], None]) -> Iterator[None]:
    """SIGINT/SIGTERM stop the stream cleanly (sinks are flushed on the way out); a second SIGINT interrupts hard.

    Installed only in the main thread (Python delivers signals there); elsewhere the caller's handlers stay.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if seen and signum == signal.SIGINT:
            raise KeyboardInterrupt
        seen.append(signum)
        stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not len(values):
        return {"p50": math.nan, "p99": math.nan, "max": math.nan}
    a = np.asarray(values, dtype=np.float64)
    p50, p99 = np.percentile(a, [50, 99])
    return {"p50": round(float(p50), 4), "p99": round(float(p99), 4), "max": round(float(a.max()), 4)}


def run_stream(bundle: str | Path | LoadedBundle, source: SourceLike, sinks: Sequence[SinkLike] = ("jsonl:-",),
               precision: str = "auto", provider: str | None = None,
               channels: Sequence[str | int] | str | None = None, status: bool = True, max_windows: int | None = None,
               stop_event: threading.Event | None = None, **options: Any) -> dict[str, Any]:
    """Stream predictions of ``bundle`` on ``source`` into ``sinks`` until the source ends or a stop is asked.

    One prediction per hop (timestamp, class probabilities, label, quality flags, latency). SIGINT/SIGTERM stop
    cleanly and flush the sinks; on a TTY stderr a one-line status shows rate, windows, drops, reconnects and
    p50/p99 latency, and nothing is drawn when stderr is piped.

    Args:
        bundle: bundle directory (or a ``LoadedBundle``); its SignalSpec fixes window, hop, rate and channels.
        source: URI such as ``brainflow:synthetic``, ``serial:/dev/ttyACM0?fs_hz=250&parser=csv_line``,
            ``lsl:MyStream``, ``file:rec.npz`` or ``file:rec.npz?realtime=true``; or a Source / ``() -> Source``.
        sinks: URIs (``jsonl:-`` stdout, ``jsonl:<path>``, ``csv:<path>``, ``lsl:<name>``), Sinks or callables.
        precision: ``auto`` | ``fp32`` | ``fp16`` | ``int8``. provider: ``cpu`` (default) | ``cuda`` | ``tensorrt``.
        channels: source channels (names or indices, or ``"a,b"``) feeding the model's channels, in order.
        status: draw the status line (still only on a TTY).
        max_windows: stop after this many predictions (scored or flagged).
        stop_event: set it from another thread to stop.
        options: ``LiveStream`` keywords (``source_options``, ``threads``, ``quality``, ``queue_size``, ``stall_s``)
            and ``status_stream`` (where the status line goes; default stderr).

    Returns:
        Stats: ``reason`` (finished | SIGINT | SIGTERM | max_windows | stop_event), ``windows``, ``emitted``,
        ``scored``, ``flagged``, ``drops``, ``reconnects``, ``gaps``, ``flag_counts``, ``samples``, ``rate_hz``,
        ``elapsed_s``, ``latency_ms`` (end to end incl. sink writes: p50/p99/max), ``infer_ms``, ``precision``,
        ``provider``.

    Raises:
        SpecError: the source's channels or rate do not fit the bundle (before anything is streamed).
    """
    status_line = StatusLine(options.pop("status_stream", None), enabled=None if status else False)
    live = LiveStream(bundle, source, precision=precision, provider=provider, channels=channels, **options)
    log.info("streaming %s (%s, %s) from %s", getattr(live.bundle, "path", "bundle"), live.bundle.precision,
             live.bundle.provider, live.source_name)
    reason = ["finished"]
    e2e: deque[float] = deque(maxlen=4096)
    infer: deque[float] = deque(maxlen=4096)
    emitted, last = 0, [live.snapshot()]

    def stop(why: str) -> None:
        if reason[0] == "finished":
            reason[0] = why
        live.stop()

    def redraw() -> None:
        snap = last[0]
        elapsed = time.monotonic() - live.t_start
        status_line.update(replace(snap, elapsed_s=elapsed, rate_hz=live.samples / max(elapsed, 1e-9)))

    with contextlib.ExitStack() as stack:
        opened = _open_sinks(stack, sinks, live.class_names)
        stack.enter_context(live)
        stack.enter_context(_signals_stop(stop))
        stack.enter_context(_watch(stop_event, lambda: stop("stop_event"), redraw if status_line.enabled else None))
        for pred in live:
            t0 = time.perf_counter()
            for sink in opened:
                sink(pred)
            emitted += 1
            if pred.scored:
                e2e.append(pred.latency_ms["total"] + (time.perf_counter() - t0) * 1e3)
                infer.append(pred.latency_ms["infer"])
            if status_line.enabled:
                last[0] = live.snapshot(e2e, pred.label or "/".join(pred.flags))
            if max_windows is not None and emitted >= max_windows:
                stop("max_windows")
                break
        final = live.snapshot(e2e)
    status_line.close(final)
    s = live.runner.stats
    elapsed = time.monotonic() - live.t_start
    result = {"reason": reason[0], "bundle": str(getattr(live.bundle, "path", "")), "source": live.source_name,
              "precision": live.bundle.precision, "provider": live.bundle.provider, "elapsed_s": round(elapsed, 3),
              "samples": live.samples, "rate_hz": round(live.samples / max(elapsed, 1e-9), 3), "windows": s.windows,
              "emitted": emitted, "scored": s.scored, "flagged": s.flagged, "drops": s.drops,
              "reconnects": s.reconnects, "gaps": s.gaps, "flag_counts": dict(s.flag_counts),
              "latency_ms": _percentiles(e2e), "infer_ms": _percentiles(infer)}
    log.info("stream ended (%s): %d windows, %d scored, %d flagged, %d dropped, %d reconnects", result["reason"],
             s.windows, s.scored, s.flagged, s.drops, s.reconnects)
    return result
