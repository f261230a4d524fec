"""LslSource: a Lab Streaming Layer stream (any LSL-enabled amplifier or app) as a Chunk source.

The stream is resolved by name/type/source_id when the source is created (so its rate and channels are known
before a StreamRunner checks them) and the inlet is opened on ``__enter__``. LSL hands samples as ``(n, C)``; they
are transposed to ``(C, n)``. LSL carries no sample counter, so samples are numbered in arrival order.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edgebridge.devices.base import Chunk, SourceError, SourceStats, missing_extra, register_source

log = logging.getLogger(__name__)


def _pylsl() -> Any:
    try:
        import pylsl
    except ImportError as e:
        raise missing_extra("pylsl") from e
    return pylsl


def _channel_labels(info: Any, n: int) -> tuple[str, ...]:
    """Channel labels from the stream's XML description; ``ch0…`` where it has none."""
    labels, ch = [], info.desc().child("channels").child("channel")
    while not ch.empty() and len(labels) < n:
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling()
    if len(labels) != n or not all(labels) or len(set(labels)) != n:
        return tuple(f"ch{i}" for i in range(n))
    return tuple(labels)


class LslSource:
    """Samples from one LSL stream.

    Args:
        name / stream_type / source_id: the property to resolve by (the first one given is used).
        resolve_timeout_s: how long to look for the stream.
        fs_hz: rate for streams with an irregular (0) nominal rate; must match a regular stream's rate.
        max_chunk_samples: most samples taken per ``read``.
        max_buflen_s: seconds the inlet buffers while nobody reads.
    """

    def __init__(self, name: str | None = None, stream_type: str | None = None, source_id: str | None = None,
                 resolve_timeout_s: float = 5.0, fs_hz: float | None = None, max_chunk_samples: int = 4096,
                 max_buflen_s: int = 30) -> None:
        pylsl = _pylsl()
        prop = next(((k, v) for k, v in (("name", name), ("type", stream_type), ("source_id", source_id)) if v), None)
        if prop is None:
            raise SourceError("LslSource needs name=, stream_type= or source_id= to find the stream")
        found = pylsl.resolve_byprop(prop[0], prop[1], 1, resolve_timeout_s)
        if not found:
            raise SourceError(f"no LSL stream with {prop[0]}='{prop[1]}' found within {resolve_timeout_s} s")
        self._pylsl, self._info = pylsl, found[0]
        nominal = float(self._info.nominal_srate())
        if nominal <= 0 and fs_hz is None:
            raise SourceError(f"LSL stream '{self._info.name()}' has an irregular rate; pass fs_hz")
        if nominal > 0 and fs_hz is not None and abs(nominal - fs_hz) > 1e-6 * nominal:
            raise SourceError(f"LSL stream '{self._info.name()}' runs at {nominal} Hz, not fs_hz={fs_hz}")
        self.fs_hz = float(fs_hz if fs_hz is not None else nominal)
        n_ch = self._info.channel_count()
        self._new_inlet = pylsl.StreamInlet(self._info, max_buflen=max_buflen_s, recover=True)
        # the resolver's info has no description; the inlet fetches the full header with the channel labels
        self.channels = _channel_labels(self._new_inlet.info(timeout=resolve_timeout_s), n_ch)
        self.stats, self.finished = SourceStats(), False
        self._buf = np.empty((max_chunk_samples, n_ch), dtype=np.float32)
        self._inlet: Any = None
        self._count = 0

    def __enter__(self) -> LslSource:
        self._new_inlet.open_stream(timeout=5.0)  # connected from here on: samples pushed later are not missed
        self._inlet = self._new_inlet
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the inlet's stream (idempotent)."""
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            inlet.close_stream()

    def read(self, timeout_s: float = 0.1) -> Chunk | None:
        """Samples that arrived since the last call (at most ``max_chunk_samples``); None if none in time."""
        if self._inlet is None:
            raise SourceError("LslSource.read() outside 'with source:'")
        _, stamps = self._inlet.pull_chunk(timeout=timeout_s, max_samples=self._buf.shape[0], dest_obj=self._buf)
        n = len(stamps)
        if n == 0:
            return None
        chunk = Chunk.from_counter(self._buf[:n].T.copy(), self.fs_hz, self.channels, self._count)
        self._count += n
        self.stats.samples += n
        self.stats.chunks += 1
        return chunk


@register_source("lsl")
def _open_lsl(rest: str, **options: Any) -> LslSource:
    """``lsl:<stream name>``, or ``lsl:`` with ``stream_type=``/``source_id=``."""
    if rest:
        options.setdefault("name", rest)
    return LslSource(**options)
