"""Tiny bridged chains and windows shared by the export/runtime tests (seeded, T=200 at 50 Hz)."""

from __future__ import annotations

import numpy as np
import torch

from edgebridge.backbones.base import ClassifierHead
from edgebridge.backbones.registry import get_backbone
from edgebridge.backbones.tiny import default_spec
from edgebridge.bridge.compose import BridgedModel
from edgebridge.bridge.config import BridgeConfig, ModelRef
from edgebridge.bridge.layers import ProtoLowRankBridge
from edgebridge.export.api import CheckWindows
from edgebridge.preprocess import Preprocessor

CLASSES = ("baseline", "stress", "amusement")
RAW_FS_HZ = 100.0  # raw windows arrive at 100 Hz and are resampled to the spec's 50 Hz


def make_chain(new_name: str = "tiny_cnn", old_name: str = "tiny_transformer", seed: int = 0,
               in_layer: int = 1, out_layer: int = 2) -> tuple[BridgedModel, BridgeConfig]:
    """A random BridgedModel (B non-zero so the bridge matters) and its BridgeConfig."""
    torch.manual_seed(seed)
    spec_new, spec_old = default_spec("ppg"), default_spec("ecg")
    new = get_backbone(new_name, spec=spec_new).freeze()
    old = get_backbone(old_name, spec=spec_old).freeze()
    config = BridgeConfig.for_models(new, old, in_layer, out_layer, rank=4, n_prototypes=8, class_names=CLASSES,
                                     new_ref=ModelRef(new_name), old_ref=ModelRef(old_name), prototype_init="randn")
    bridge = ProtoLowRankBridge(config.d_in, config.d_out, config.n_tokens, config.rank, config.n_prototypes)
    torch.nn.init.normal_(bridge.B, std=0.2)
    head = ClassifierHead(old.probe()[-1].out_dim, CLASSES)
    model = BridgedModel(new, in_layer, bridge, old, out_layer, head)
    model.requires_grad_(False).eval()
    return model, config


def raw_windows(n: int, seed: int = 0, fs_hz: float = RAW_FS_HZ) -> np.ndarray:
    """Quasi-periodic pulse-like raw windows (4 s) at ``fs_hz``. Shapes: -> (n, 1, 4·fs_hz)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(4 * fs_hz)) / fs_hz
    rate = rng.uniform(0.8, 2.2, size=(n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    x = np.sin(2 * np.pi * rate * t + phase) + 0.4 * np.sin(4 * np.pi * rate * t + phase)
    return (x + 0.2 * rng.standard_normal(x.shape)).astype(np.float32)


def check_windows(model: BridgedModel, n: int = 32, seed: int = 1, with_old: bool = True) -> CheckWindows:
    """Preprocessed check windows; labels are the fp32 model's own argmax (so fp32 balanced accuracy is 1)."""
    spec = default_spec("ppg")
    raw = raw_windows(n, seed)
    x = Preprocessor(spec, RAW_FS_HZ).batch(raw)
    with torch.no_grad():
        labels = model(torch.from_numpy(x)).argmax(1).numpy()
    x_old = Preprocessor(default_spec("ecg"), RAW_FS_HZ).batch(raw_windows(n, seed + 7)) if with_old else None
    subjects = np.array([f"s{i % 4}" for i in range(n)])
    return CheckWindows(x_new=x, labels=labels.astype(np.int64), x_old=x_old, subjects=subjects, raw_new=raw,
                        raw_fs_hz=RAW_FS_HZ, provenance={"split": "synthetic-test"})


def calib_windows(n: int = 48, seed: int = 2) -> np.ndarray:
    return Preprocessor(default_spec("ppg"), RAW_FS_HZ).batch(raw_windows(n, seed))
