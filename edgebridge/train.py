"""Compact bridge trainer on cached frozen features.

A step is: cached pooled new features z → bridge → old blocks l..L (frozen, with autograd to the bridge) →
1 − cos against the cached old last-block output (both in the canonical (B, N, D) layout). The new model never
runs and the old model never runs below block l. Adam on bridge parameters only, warm-up + cosine LR, validation
alignment every epoch, early stopping, best checkpoint, resumable from the last epoch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgebridge.bridge.compose import OldSuffix
from edgebridge.bridge.layers import ProtoLowRankBridge
from edgebridge.io import atomic_write_bytes, atomic_write_json
from edgebridge.registry import Registry

log = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[LossFn] = Registry("loss")


@LOSSES.register("cosine")
def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 1 − cos between flattened last-block outputs (the paper's CosineEmbeddingLoss)."""
    return (1 - F.cosine_similarity(pred.flatten(1).float(), target.flatten(1).float(), dim=1)).mean()


@LOSSES.register("mse")
def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred.flatten(1).float(), target.flatten(1).float())


@dataclass
class TrainConfig:
    """Trainer settings (the paper: Adam, batch 16, lr 1e-4…1e-6, 50–100 epochs, no early stopping)."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    schedule: str = "cosine"
    patience: int = 6
    min_delta: float = 1e-4
    loss: str = "cosine"
    seed: int = 0
    device: str = "auto"
    amp: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("train.epochs and train.batch_size must be >= 1 and train.lr > 0")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"train.schedule must be 'cosine' or 'constant', got '{self.schedule}'")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"train.device must be auto, cpu or cuda[:N], got '{self.device}'")
        LOSSES.get(self.loss)


@dataclass
class TrainResult:
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    history: list[dict] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 10% (or constant)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def autocast_for(device: torch.device, amp: bool):
    """bf16 autocast on CUDA (bridge training on workstation GPUs); nothing on CPU."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def evaluate(bridge: ProtoLowRankBridge, suffix: OldSuffix, z: np.ndarray, target: np.ndarray, cfg: TrainConfig,
             device: torch.device) -> float:
    """Mean alignment loss over a cached split."""
    loss_fn, total, n = LOSSES.get(cfg.loss), 0.0, 0
    for start in range(0, len(z), cfg.batch_size * 4):
        zb = torch.from_numpy(np.array(z[start:start + cfg.batch_size * 4])).to(device)
        tb = torch.from_numpy(np.array(target[start:start + cfg.batch_size * 4])).to(device)
        with autocast_for(device, cfg.amp):
            loss = loss_fn(suffix.last_btd(bridge(zb)), tb)
        total += float(loss) * len(zb)
        n += len(zb)
    return total / n


def fit(bridge: ProtoLowRankBridge, suffix: OldSuffix, train: tuple[np.ndarray, np.ndarray],
        val: tuple[np.ndarray, np.ndarray], cfg: TrainConfig, out_dir: str | Path,
        on_best: Callable[[ProtoLowRankBridge], None], resume: bool = True, progress: bool = True) -> TrainResult:
    """Train ``bridge`` on cached (z, target) pairs; ``on_best`` saves the best-validation bridge.

    Shapes: train/val = (z (N, d_in), target (N, N_L·D_L)).
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    state_path = out_dir / "train_state.pt"
    # --- seed, device, model --------------------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    z_train, t_train = train
    if len(z_train) == 0:
        raise ValueError("the pair split has no windows: nothing to train the bridge on")
    suffix.requires_grad_(False).eval().to(device)
    bridge.train().to(device)
    loss_fn = LOSSES.get(cfg.loss)
    opt = torch.optim.Adam(bridge.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(z_train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    history: list[dict] = []
    best_loss, best_epoch, bad_epochs, start_epoch = math.inf, -1, 0, 0
    # --- resume ---------------------------------------------------------------------------------------------
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        bridge.load_state_dict(state["bridge"])
        opt.load_state_dict(state["optimizer"])
        best_loss, best_epoch, bad_epochs = state["best_loss"], state["best_epoch"], state["bad_epochs"]
        start_epoch, history = state["epoch"] + 1, list(state["history"])
        log.info("resuming bridge training at epoch %d (best val loss %.4f)", start_epoch, best_loss)
    if start_epoch == 0:
        history.append({"epoch": -1, "train_loss": evaluate(bridge, suffix, z_train, t_train, cfg, device),
                        "val_loss": evaluate(bridge, suffix, *val, cfg, device), "lr": 0.0})
    # --- loop -----------------------------------------------------------------------------------------------
    stopped_early = False
    bar = tqdm(range(start_epoch, cfg.epochs), desc="training bridge", disable=None if progress else True,
               leave=False)
    for epoch in bar:
        order = np.random.default_rng(cfg.seed + epoch).permutation(len(z_train))
        running = 0.0
        for i in range(steps_per_epoch):
            idx = np.sort(order[i * cfg.batch_size:(i + 1) * cfg.batch_size])
            zb = torch.from_numpy(np.array(z_train[idx])).to(device)
            tb = torch.from_numpy(np.array(t_train[idx])).to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch * steps_per_epoch + i, total_steps, cfg)
            with autocast_for(device, cfg.amp):
                loss = loss_fn(suffix.last_btd(bridge(zb)), tb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += float(loss.detach()) * len(idx)
        val_loss = evaluate(bridge, suffix, *val, cfg, device)
        history.append({"epoch": epoch, "train_loss": running / len(z_train), "val_loss": val_loss,
                        "lr": opt.param_groups[0]["lr"]})
        bar.set_postfix(train=f"{running / len(z_train):.4f}", val=f"{val_loss:.4f}")
        if val_loss < best_loss - cfg.min_delta:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
            on_best(bridge)
        else:
            bad_epochs += 1
        _save_state(state_path, bridge, opt, epoch, best_loss, best_epoch, bad_epochs, history)
        if bad_epochs > cfg.patience:
            stopped_early = True
            log.info("early stop at epoch %d: no validation improvement for %d epochs", epoch, bad_epochs)
            break
    atomic_write_json(out_dir / "train_history.json", {"config": asdict(cfg), "history": history})
    return TrainResult(best_epoch, best_loss, len([h for h in history if h["epoch"] >= 0]), stopped_early,
                       time.perf_counter() - t0, history)


def _save_state(path: Path, bridge: ProtoLowRankBridge, opt: torch.optim.Optimizer, epoch: int, best_loss: float,
                best_epoch: int, bad_epochs: int, history: list[dict]) -> None:
    """Resume state: plain tensors and numbers only, so it loads with ``weights_only=True``."""
    import io

    buf = io.BytesIO()
    torch.save({"bridge": bridge.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "best_loss": best_loss,
                "best_epoch": best_epoch, "bad_epochs": bad_epochs, "history": history}, buf)
    atomic_write_bytes(path, buf.getvalue())
