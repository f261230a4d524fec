"""Acquisition sources (NumPy only; device packages load lazily): ``open_source("brainflow:synthetic")``."""

from __future__ import annotations

from edgebridge.devices.base import SOURCES, Chunk, Source, SourceError, SourceStats, open_source, register_source
from edgebridge.devices.replay import ReplaySource

__all__ = ["SOURCES", "Chunk", "ReplaySource", "Source", "SourceError", "SourceStats", "open_source",
           "register_source"]
