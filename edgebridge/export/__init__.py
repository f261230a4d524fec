"""Export stage: BridgedModel → ONNX (fp32/fp16/int8) → verified bundle; TensorRT engines on the target.

Names load lazily so that ``edgebridge.export.bundle`` (``load_bundle``) works on a device without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_bundle": "edgebridge.export.api",
    "export_run": "edgebridge.export.api",
    "verify_bundle": "edgebridge.export.api",
    "build_engines": "edgebridge.export.api",
    "CheckWindows": "edgebridge.export.api",
    "load_bundle": "edgebridge.export.bundle",
    "BundleError": "edgebridge.export.bundle",
    "bench_bundle": "edgebridge.bench",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgebridge.export' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = sorted(_LAZY)
