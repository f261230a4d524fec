"""The old model's task head, fitted the paper's way (BioX-Bridge stage 1, "g_old") when the user has none.

The paper trains one ``nn.Linear`` on the mean-pooled last-block output of the old model with class-weighted
cross-entropy (weights ∝ 1/count) on the labelled ``train`` split, before anything else uses the old model. Here the
old backbone stays frozen, so its readout features are computed once (and cached on disk, keyed by weights and
windows) and the head is fitted on them in seconds; the epoch kept is the one with the best validation balanced
accuracy (ties broken by validation loss), instead of an epoch picked by hand as upstream did.

The paper fine-tuned the whole old model in two directions (PaPaGei in wesad_ppg2ecg, NormWear in fog_emg2eeg).
edgebridge does not: the old model must stay frozen for the bridge, so a fine-tuned model has to come in as a
checkpoint (``old.checkpoint``, with its head in ``old.head``).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from edgebridge.backbones.base import Backbone, ClassifierHead
from edgebridge.backbones.loading import build_backbone, save_head
from edgebridge.features import module_fingerprint
from edgebridge.io import atomic_directory, atomic_write_json
from edgebridge.metrics import class_weights, classification_metrics

if TYPE_CHECKING:
    from edgebridge.config import RunConfig
    from edgebridge.spec import SignalSpec

log = logging.getLogger(__name__)
READOUT_CACHE_VERSION = 1
HEAD_FILE = "old_head.safetensors"


@dataclass
class HeadFitConfig:
    """Settings of the head fit (``[head_fit]`` in a run config); used only when ``old.head`` is not given.

    Attributes:
        lr, epochs, batch_size, weight_decay: Adam on the head's weights (the paper: Adam, no decay).
        patience: stop after this many epochs without a better validation score.
        class_weighted: cross-entropy weights N / (K · count_k), the paper's ``1/count`` weighting.
        standardize: fit on z-scored features and fold the scaling into the layer (same head format; off by
            default, as in the paper).
        seed: shuffling and initialisation.
    """

    lr: float = 1e-3
    epochs: int = 50
    batch_size: int = 32
    patience: int = 10
    weight_decay: float = 0.0
    class_weighted: bool = True
    standardize: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.patience < 0:
            raise ValueError("head_fit.epochs and head_fit.batch_size must be >= 1, head_fit.lr > 0 and "
                             "head_fit.patience >= 0")


@torch.no_grad()
def readout_features(backbone: Backbone, windows: Any, batch_size: int = 32,
                     device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Readout features and labels of the labelled old-modality windows of one split.

    Shapes: -> z (N, D) float32, y (N,) int64 (unlabelled windows are left out).
    """
    zs, ys = [], []
    for _, x_old, y in windows.batches(batch_size):
        keep = y >= 0
        if not keep.any():
            continue
        x = torch.from_numpy(x_old[keep]).to(device)
        zs.append(backbone.readout(backbone(x)).float().cpu().numpy())
        ys.append(y[keep])
    if not zs:
        return np.zeros((0, backbone.probe()[-1].out_dim), np.float32), np.zeros(0, np.int64)
    return np.concatenate(zs), np.concatenate(ys).astype(np.int64)


def cached_readout(cache_root: str | Path, backbone: Backbone, windows: Any, batch_size: int = 32,
                   device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """:func:`readout_features`, computed once per (weights, windows) and reused from ``cache_root``."""
    key = hashlib.sha256(f"{READOUT_CACHE_VERSION}|{module_fingerprint(backbone)}|{windows.fingerprint()}"
                         .encode()).hexdigest()[:20]
    path = Path(cache_root) / key
    if (path / "readout.npz").is_file():
        log.info("reusing cached old-model readout features %s", path)
        with np.load(path / "readout.npz") as f:
            return f["z"], f["y"]
    z, y = readout_features(backbone, windows, batch_size, device)
    with atomic_directory(path) as tmp:
        np.savez(tmp / "readout.npz", z=z, y=y)
    return z, y


def _scores(head: ClassifierHead, z: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None,
            k: int) -> tuple[float, float]:
    """(balanced accuracy, weighted cross-entropy) of ``head`` on standardised features."""
    with torch.no_grad():
        logits = head(z)
        loss = float(F.cross_entropy(logits, y, weight=weight))
        pred = logits.argmax(dim=1).numpy()
    return classification_metrics(y.numpy(), pred, k)["balanced_accuracy"], loss


def _train(head: ClassifierHead, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
           weight: torch.Tensor | None, cfg: HeadFitConfig) -> tuple[tuple, list[dict[str, Any]]]:
    """Adam epochs with early stopping; returns (best val BA, its val loss, epoch, state dict) and the history."""
    (zt, yt), (zv, yv), k = train, val, len(head.class_names)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    best: tuple = (-1.0, float("inf"), -1, None)
    history, bad = [], 0
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(yt))
        for start in range(0, len(yt), cfg.batch_size):
            idx = torch.from_numpy(order[start:start + cfg.batch_size])
            loss = F.cross_entropy(head(zt[idx]), yt[idx], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        ba, val_loss = _scores(head, zv, yv, weight, k)
        history.append({"epoch": epoch, "val_balanced_accuracy": ba, "val_loss": val_loss})
        if ba > best[0] + 1e-9 or (ba >= best[0] - 1e-9 and val_loss < best[1] - 1e-6):
            best, bad = (ba, val_loss, epoch, copy.deepcopy(head.state_dict())), 0
        else:
            bad += 1
            if bad > cfg.patience:
                break
    return best, history


def fit_linear_head(z_train: np.ndarray, y_train: np.ndarray, z_val: np.ndarray, y_val: np.ndarray,
                    class_names: tuple[str, ...], cfg: HeadFitConfig) -> tuple[ClassifierHead, dict[str, Any]]:
    """Fit ``ClassifierHead`` (one linear layer) with weighted cross-entropy, keep the best-validation epoch.

    Shapes: z_* (N, D) readout features, y_* (N,) class indices -> head (D -> K).
    """
    k = len(class_names)
    for name, y in (("train", y_train), ("val", y_val)):
        if y.size == 0:
            raise ValueError(f"the {name} split has no labelled windows: cannot fit the old model's head")
        if y.max() >= k:
            raise ValueError(f"{name} labels reach class {int(y.max())} but old.classes names only {k} classes")
    torch.manual_seed(cfg.seed)
    mean = z_train.mean(axis=0) if cfg.standardize else np.zeros(z_train.shape[1])
    std = z_train.std(axis=0) + 1e-6 if cfg.standardize else np.ones(z_train.shape[1])
    zt, zv = (torch.from_numpy(((z - mean) / std).astype(np.float32)) for z in (z_train, z_val))
    yt, yv = torch.from_numpy(y_train), torch.from_numpy(y_val)
    weight = torch.from_numpy(class_weights(y_train, k).astype(np.float32)) if cfg.class_weighted else None
    head = ClassifierHead(z_train.shape[1], class_names)
    best, history = _train(head, (zt, yt), (zv, yv), weight, cfg)
    head.load_state_dict(best[3])
    _fold_standardisation(head, mean, std)
    train_ba = _scores(head, torch.from_numpy(z_train.astype(np.float32)), yt, weight, k)[0]
    info = {"best_epoch": best[2], "val_balanced_accuracy": best[0], "val_loss": best[1],
            "train_balanced_accuracy": train_ba, "epochs_run": len(history),
            "train_class_counts": np.bincount(y_train, minlength=k).tolist(), "config": asdict(cfg),
            "history": history}
    return head.requires_grad_(False).eval(), info


@torch.no_grad()
def _fold_standardisation(head: ClassifierHead, mean: np.ndarray, std: np.ndarray) -> None:
    """W((z − μ)/σ) + b  ==  (W/σ) z + (b − W μ/σ): the saved head reads raw readout features."""
    w = head.fc.weight / torch.from_numpy(std.astype(np.float32))
    head.fc.bias -= w @ torch.from_numpy(mean.astype(np.float32))
    head.fc.weight.copy_(w)


def fit_old_head(cfg: RunConfig, run_dir: Path, windows: dict[str, Any], spec_old: SignalSpec
                 ) -> tuple[Path, dict[str, Any]]:
    """Stage 1 of the method for a run without ``old.head``: fit, save ``models/old_head.safetensors`` (+ .json).

    The frozen old backbone is built from ``old.checkpoint`` exactly as the later stages build it.
    """
    from edgebridge.train import resolve_device

    if not cfg.old.classes:
        raise ValueError("old.classes must name the task's classes to fit the old model's head")
    device = resolve_device(cfg.train.device)
    old = build_backbone(cfg.old.backbone, spec_old, cfg.old.kwargs, cfg.old.checkpoint, None,
                         cfg.old.trust_checkpoint).to(device)
    if cfg.bridge.out_layer != "auto":  # fail on a bad index before the feature pass, not after it
        old.check_block_index(int(cfg.bridge.out_layer), "bridge.out_layer")
    cache_root = Path(run_dir).parent / ".edgebridge-cache" / "readout"
    bs = cfg.train.batch_size
    z_train, y_train = cached_readout(cache_root, old, windows["train"], bs, device)
    z_val, y_val = cached_readout(cache_root, old, windows["val"], bs, device)
    head, info = fit_linear_head(z_train, y_train, z_val, y_val, tuple(cfg.old.classes), cfg.head_fit)
    path = save_head(Path(run_dir) / "models" / HEAD_FILE, head)
    atomic_write_json(path.with_suffix(".json"), info)
    log.info("fitted the old model's head on %d train windows: val balanced accuracy %.3f (epoch %d) -> %s",
             y_train.size, info["val_balanced_accuracy"], info["best_epoch"], path)
    return path, info
