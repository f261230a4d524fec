"""Acquisition sources (NumPy only; device packages load lazily): ``open_source("brainflow:synthetic")``."""

from __future__ import annotations

from edgebridge.devices.base import SOURCES, Chunk, Source, SourceError, SourceStats, open_source, register_source
from edgebridge.devices.brainflow import BrainFlowSource
from edgebridge.devices.frames import PARSERS, make_parser
from edgebridge.devices.lsl import LslSource
from edgebridge.devices.replay import ReplaySource
from edgebridge.devices.serial import SerialSource

__all__ = ["PARSERS", "SOURCES", "BrainFlowSource", "Chunk", "LslSource", "ReplaySource", "SerialSource", "Source",
           "SourceError", "SourceStats", "make_parser", "open_source", "register_source"]
