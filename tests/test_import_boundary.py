"""Device-side modules import without PyTorch (a Jetson running an ONNX bundle has none)."""

from __future__ import annotations

import subprocess
import sys

MODULES = ["edgebridge.spec", "edgebridge.dsp", "edgebridge.preprocess", "edgebridge.windowing",
           "edgebridge.devices", "edgebridge.devices.base", "edgebridge.devices.replay", "edgebridge.devices.frames",
           "edgebridge.devices.serial", "edgebridge.devices.brainflow", "edgebridge.devices.lsl",
           "edgebridge.runtime", "edgebridge.runtime.buffer", "edgebridge.runtime.quality",
           "edgebridge.runtime.stream", "edgebridge.runtime.sinks", "edgebridge.runtime.app",
           "edgebridge.runtime.status", "edgebridge.doctor"]

# `sys.modules["torch"] = None` is the usual trick, but SciPy >= 1.17 breaks under it: importing scipy.signal builds
# scipy.stats docs, whose array-API helpers do getattr(sys.modules["torch"], "Tensor") on None. A meta-path finder
# that refuses torch gives the same guarantee (every `import torch`, direct or nested, raises ImportError).
CODE = """
import importlib, sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} is blocked: device-side code must not import torch")

sys.meta_path.insert(0, BlockTorch())
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:  # a module not written yet is not a boundary violation
            continue
        raise
heavy = sorted(m for m in ("torch", "brainflow", "serial", "pylsl") if sys.modules.get(m) is not None)
print(",".join(heavy))
"""


def test_device_side_imports_without_torch() -> None:
    r = subprocess.run([sys.executable, "-c", CODE, *MODULES], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # optional device packages load lazily, only when a source of that kind is opened
    assert r.stdout.strip() == "", f"imported at module load: {r.stdout.strip()}"


def test_boundary_check_can_fail() -> None:
    r = subprocess.run([sys.executable, "-c", CODE, "edgebridge.backbones.tiny"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "torch" in r.stderr
