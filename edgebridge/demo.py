"""The built-in demo's two frozen models, trained honestly before any bridging.

- OLD model (ECG → condition): supervised, with labels, on the train split's ECG only.
- NEW model (PPG encoder): pretrained WITHOUT the task's labels. Its pretext task regresses morphology/rhythm
  descriptors computed from each PPG window itself (pulse rate, pulse regularity, respiratory-band power,
  beat-interval spread), in the spirit of PaPaGei-S's morphology-aware pretraining. Condition labels never reach it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import signal as sps
from torch import nn

from edgebridge.backbones.base import Backbone, ClassifierHead, TaskModel
from edgebridge.backbones.loading import save_backbone, save_head
from edgebridge.metrics import class_weights, classification_metrics

log = logging.getLogger(__name__)


def ppg_descriptors(x: np.ndarray, fs_hz: float) -> np.ndarray:
    """Label-free pretext targets of one preprocessed PPG window. Shapes: (C, T) -> (4,)."""
    s = x[0].astype(np.float64)
    spec = np.abs(np.fft.rfft(s * np.hanning(s.size))) ** 2
    freqs = np.fft.rfftfreq(s.size, 1 / fs_hz)
    pulse_band = (freqs >= 0.6) & (freqs <= 3.5)
    pulse_hz = freqs[pulse_band][np.argmax(spec[pulse_band])]
    resp_ratio = spec[(freqs >= 0.1) & (freqs < 0.5)].sum() / (spec[freqs >= 0.1].sum() + 1e-12)
    lag = max(1, int(round(fs_hz / pulse_hz)))
    regularity = float(np.corrcoef(s[:-lag], s[lag:])[0, 1]) if lag < s.size - 2 else 0.0
    peaks, _ = sps.find_peaks(s, distance=max(1, int(0.3 * fs_hz)))
    spread = float(np.std(np.diff(peaks)) / fs_hz) if peaks.size > 2 else 0.0
    return np.array([pulse_hz * 60.0, np.log(resp_ratio + 1e-6), regularity, spread], dtype=np.float32)


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield np.sort(order[i:i + batch_size])


def train_old_model(backbone: Backbone, class_names: tuple[str, ...], x_train: np.ndarray, y_train: np.ndarray,
                    x_val: np.ndarray, y_val: np.ndarray, epochs: int = 12, seed: int = 0) -> TaskModel:
    """Supervised training of the old model (backbone + linear head); keeps the best validation epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = ClassifierHead(backbone.probe()[-1].out_dim, class_names)
    model = TaskModel(backbone, head)
    weight = torch.from_numpy(class_weights(y_train, len(class_names)).astype(np.float32))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    best, best_state = -1.0, None
    for epoch in range(epochs):
        model.train()
        for idx in _batches(len(x_train), 32, rng):
            loss = F.cross_entropy(model(torch.from_numpy(x_train[idx])), torch.from_numpy(y_train[idx]),
                                   weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        score = evaluate_classifier(model, x_val, y_val)["balanced_accuracy"]
        log.info("old model epoch %d: val balanced accuracy %.3f", epoch, score)
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model.requires_grad_(False).eval()


def pretrain_new_model(backbone: Backbone, x: np.ndarray, fs_hz: float, epochs: int = 8, seed: int = 0) -> Backbone:
    """Self-supervised pretext regression on label-free PPG descriptors; returns the frozen encoder."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    targets = np.stack([ppg_descriptors(w, fs_hz) for w in x])
    targets = (targets - targets.mean(0)) / (targets.std(0) + 1e-6)
    pretext = nn.Linear(backbone.probe()[-1].out_dim, targets.shape[1])
    params = list(backbone.parameters()) + list(pretext.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    for epoch in range(epochs):
        backbone.train()
        total = 0.0
        for idx in _batches(len(x), 32, rng):
            pred = pretext(backbone.readout(backbone(torch.from_numpy(x[idx]))))
            loss = F.mse_loss(pred, torch.from_numpy(targets[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        log.info("new model pretext epoch %d: mse %.3f", epoch, total / len(x))
    return backbone.freeze()


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    model.eval()
    out = [model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size]))).argmax(1).numpy()
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def evaluate_classifier(model: nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return classification_metrics(y, predict(model, x), n_classes=None if len(y) == 0 else int(max(y.max(), 0) + 1))


DEMO_FILES = {"old": "old_backbone.safetensors", "head": "old_head.safetensors", "new": "new_backbone.safetensors"}


def demo_model_paths(models_dir: Path) -> dict[str, Path]:
    """Where a run keeps its demo models (one naming for saving them and for resuming the run)."""
    return {role: models_dir / name for role, name in DEMO_FILES.items()}


def save_demo_models(models_dir: Path, old: TaskModel, new: Backbone) -> dict[str, Path]:
    paths = demo_model_paths(models_dir)
    save_backbone(paths["old"], old.backbone)
    save_head(paths["head"], old.head)
    save_backbone(paths["new"], new)
    return paths
