"""edgebridge: move a biosignal model's skill to a new sensor and run it on small devices.

Heavy submodules (torch) load lazily, so ``import edgebridge`` works on a device with only NumPy/ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "SignalSpec": "edgebridge.spec",
    "Preprocessor": "edgebridge.preprocess",
    "RunConfig": "edgebridge.config",
    "load_config": "edgebridge.config",
    "default_config": "edgebridge.config",
    "BridgeConfig": "edgebridge.bridge.config",
    "BridgedModel": "edgebridge.bridge.compose",
    "ProtoLowRankBridge": "edgebridge.bridge.layers",
    "quickstart": "edgebridge.api",
    "select_positions": "edgebridge.api",
    "train_bridge": "edgebridge.api",
    "evaluate": "edgebridge.api",
    "load_bridged": "edgebridge.api",
    "export_bundle": "edgebridge.export.api",
    "export_run": "edgebridge.export.api",
    "load_bundle": "edgebridge.export.bundle",
    "StreamRunner": "edgebridge.runtime.stream",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgebridge' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = sorted(_LAZY)
