"""Streaming runtime core (NumPy only): ring buffer, windowing, quality flags, runner, sinks."""

from __future__ import annotations

from edgebridge.runtime.buffer import RingBuffer, Window, Windower
from edgebridge.runtime.quality import QualityConfig, window_flags
from edgebridge.runtime.sinks import SINKS, CallbackSink, CsvSink, JsonlSink, LslSink, Sink, open_sink
from edgebridge.runtime.stream import Backend, Prediction, RunnerStats, StreamRunner

__all__ = ["SINKS", "Backend", "CallbackSink", "CsvSink", "JsonlSink", "LslSink", "Prediction", "QualityConfig",
           "RingBuffer", "RunnerStats", "Sink", "StreamRunner", "Window", "Windower", "open_sink", "window_flags"]
