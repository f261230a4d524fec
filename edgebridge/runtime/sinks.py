"""Consumers of Predictions: JSONL (stdout or file), CSV, an LSL outlet, or a Python callback.

Every sink is a context manager and a callable (``sink(pred)``); closing flushes. Sinks are chosen by URI like
sources: ``open_sink("jsonl:-")``, ``open_sink("csv:preds.csv", class_names=...)``, ``open_sink("lsl:edgebridge")``.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgebridge.devices.base import missing_extra
from edgebridge.registry import Registry
from edgebridge.runtime.stream import Prediction

log = logging.getLogger(__name__)


class Sink:
    """Base: ``with sink: sink(pred)``; subclasses implement ``write`` and may extend ``close``."""

    def write(self, pred: Prediction) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release; idempotent."""

    def __call__(self, pred: Prediction) -> None:
        self.write(pred)

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_text(target: str | Path | IO[str]) -> tuple[IO[str], bool]:
    """A writable text stream and whether this sink owns it (``"-"`` is stdout, which is flushed, never closed)."""
    if target == "-":
        return sys.stdout, False
    if isinstance(target, (str, Path)):
        return open(target, "w", encoding="utf-8", newline=""), True
    return target, False


class _TextFileSink(Sink):
    """A sink writing text to a file it may own (closed) or to stdout/a caller's stream (only flushed)."""

    def __init__(self, target: str | Path | IO[str]) -> None:
        self._f, self._own = _open_text(target)
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._f.flush()
            if self._own:
                self._f.close()


class JsonlSink(_TextFileSink):
    """One JSON object per line (``Prediction.to_dict``)."""

    def __init__(self, target: str | Path | IO[str] = "-") -> None:
        super().__init__(target)

    def write(self, pred: Prediction) -> None:
        self._f.write(json.dumps(pred.to_dict()) + "\n")


class CsvSink(_TextFileSink):
    """Columns: t_end_s, start_index, label, flags, p_<class>…, dsp_ms, infer_ms, total_ms."""

    def __init__(self, target: str | Path | IO[str], class_names: Sequence[str]) -> None:
        super().__init__(target)
        self.class_names = tuple(class_names)
        self._w = csv.writer(self._f)
        self._w.writerow(["t_end_s", "start_index", "label", "flags", *(f"p_{c}" for c in self.class_names),
                          "dsp_ms", "infer_ms", "total_ms"])

    def write(self, pred: Prediction) -> None:
        probs = [""] * len(self.class_names) if pred.probs is None else [f"{p:.6g}" for p in pred.probs]
        lat = pred.latency_ms
        self._w.writerow([f"{pred.t_end_s:.6f}", pred.start_index, pred.label or "", "|".join(pred.flags), *probs,
                          f"{lat.get('dsp', 0.0):.4f}", f"{lat.get('infer', 0.0):.4f}", f"{lat.get('total', 0.0):.4f}"])


class LslSink(Sink):
    """An LSL outlet of K+1 float32 channels per window: class probabilities then the label index (-1: unscored).

    Samples are stamped with LSL's ``local_clock()`` when sent; ``stamp_now=False`` stamps them with ``t_end_s``
    (device clock, meaningful only when the source is itself LSL-synchronised).
    """

    def __init__(self, name: str, class_names: Sequence[str], source_id: str = "", stamp_now: bool = True) -> None:
        try:
            import pylsl
        except ImportError as e:
            raise missing_extra("pylsl") from e
        self.class_names = tuple(class_names)
        k = len(self.class_names)
        info = pylsl.StreamInfo(name or "edgebridge", "Predictions", k + 1, pylsl.IRREGULAR_RATE, "float32",
                                source_id or f"edgebridge-{name}")
        chans = info.desc().append_child("channels")
        for label in [*(f"p_{c}" for c in self.class_names), "label_index"]:
            chans.append_child("channel").append_child_value("label", label)
        self._outlet = pylsl.StreamOutlet(info)
        self._stamp_now = stamp_now
        self._pylsl = pylsl

    def write(self, pred: Prediction) -> None:
        k = len(self.class_names)
        probs = np.full(k, np.nan, np.float32) if pred.probs is None else np.asarray(pred.probs, np.float32)
        idx = -1.0 if pred.label is None else float(self.class_names.index(pred.label))
        stamp = self._pylsl.local_clock() if self._stamp_now else pred.t_end_s
        self._outlet.push_sample([*probs.tolist(), idx], stamp)

    def close(self) -> None:
        self._outlet = None  # liblsl tears the outlet down when the last reference goes


class CallbackSink(Sink):
    """Calls ``fn(pred)`` for every prediction."""

    def __init__(self, fn: Callable[[Prediction], Any]) -> None:
        self.fn = fn

    def write(self, pred: Prediction) -> None:
        self.fn(pred)


def _csv_sink(rest: str, **options: Any) -> CsvSink:
    if not rest:
        raise ValueError("a csv sink needs a path: 'csv:predictions.csv'")
    return CsvSink(rest, **options)


SINKS: Registry[Callable[..., Sink]] = Registry("sink")
SINKS.add("jsonl", lambda rest, **kw: JsonlSink(rest or "-", **kw))
SINKS.add("csv", _csv_sink)
SINKS.add("lsl", lambda rest, **kw: LslSink(rest, **kw))


def open_sink(uri: str, **options: Any) -> Sink:
    """``jsonl:-`` (stdout), ``jsonl:<path>``, ``csv:<path>`` (needs ``class_names``), ``lsl:<stream name>``."""
    scheme, sep, rest = uri.partition(":")
    if not sep:
        raise ValueError(f"sink URI '{uri}' must look like 'kind:target', e.g. 'jsonl:-'; kinds: {SINKS.names()}")
    return SINKS.get(scheme)(rest, **options)
