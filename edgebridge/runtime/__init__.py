"""Streaming runtime core (NumPy only): ring buffer, windowing, quality flags, runner, sinks."""

from __future__ import annotations

from edgebridge.runtime.buffer import RingBuffer, Window, Windower

__all__ = ["RingBuffer", "Window", "Windower"]
