"""The method end to end: data → (demo models) → frozen features → positions → bridge → held-out evaluation.

Each stage is a function a notebook can call; the CLI verbs and ``edgebridge.api`` are thin wrappers. Every
check that can fail on user input (specs vs data rates, NaN samples, empty splits, block indices, checkpoints)
runs before the first long computation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgebridge.backbones.base import Backbone, ClassifierHead, TaskModel
from edgebridge.backbones.loading import build_backbone, load_head
from edgebridge.backbones.registry import get_backbone
from edgebridge.bridge.checkpoint import load_bridged, make_bridge, save_bridge, trainable_fraction
from edgebridge.bridge.compose import OldSuffix
from edgebridge.bridge.config import BridgeConfig, ModelRef
from edgebridge.bridge.select import Selection, select_positions
from edgebridge.config import RunConfig, config_to_toml
from edgebridge.data.recordings import Recording, get_loader
from edgebridge.data.windows import SPLITS, PairedWindows, split_subjects
from edgebridge.features import FeatureSet, cached_features
from edgebridge.io import atomic_write_json, atomic_write_text, sha256_file
from edgebridge.metrics import classification_metrics
from edgebridge.runs import write_run_info
from edgebridge.spec import SignalSpec
from edgebridge.train import fit, resolve_device

log = logging.getLogger(__name__)


# --- data ---------------------------------------------------------------------------------------------------
def resolve_specs(cfg: RunConfig) -> tuple[SignalSpec, SignalSpec]:
    """SignalSpecs of the new and old models: the backbone's own spec, updated by the config's ``spec`` fields."""

    def one(section: Any, modality: str) -> SignalSpec:
        fields = dict(section.spec)
        try:
            spec = SignalSpec.from_dict(fields)
        except ValueError:
            with torch.device("meta"):  # only the default spec is needed: build no real weights
                spec = get_backbone(section.backbone, **section.kwargs).spec.replace(**fields)
        if spec.modality != modality:
            raise ValueError(f"{section.backbone}: spec modality '{spec.modality}' differs from the run's '{modality}'")
        return spec

    return one(cfg.new, cfg.new_modality), one(cfg.old, cfg.old_modality)


def load_recordings(cfg: RunConfig) -> list[Recording]:
    """All recordings of the configured loader, checked for the two modalities and for NaN/inf samples."""
    recordings = list(get_loader(cfg.data.loader)(cfg.data.root, **cfg.data.options))
    if not recordings:
        raise ValueError(f"loader '{cfg.data.loader}' returned no recordings from {cfg.data.root}")
    for rec in recordings:
        for modality in (cfg.new_modality, cfg.old_modality):
            data = rec.signal(modality).data
            bad = data.size - int(np.isfinite(data).sum())
            if bad:
                raise ValueError(f"subject {rec.subject}: {modality} has {bad} NaN/inf sample(s); clean or drop them")
    return recordings


def build_windows(cfg: RunConfig, spec_new: SignalSpec, spec_old: SignalSpec,
                  splits: tuple[str, ...] = SPLITS) -> dict[str, Any]:
    """Paired windows per split (train/val/test labelled, pair unlabelled), subject-wise and deterministic."""
    if cfg.data.prepared is not None:
        from edgebridge.data.prepared import PreparedWindows

        return {s: PreparedWindows(cfg.data.prepared, s, spec_new, spec_old) for s in splits}
    recordings = load_recordings(cfg)
    groups = split_subjects([r.subject for r in recordings], cfg.data.split_fractions, cfg.data.split_seed)
    out = {}
    for split in splits:
        members = [r for r in recordings if r.subject in set(groups[split])]
        out[split] = PairedWindows(members, spec_new, spec_old, labelled_only=split != "pair")
    return out


def stack_split(windows: Any, which: int) -> tuple[np.ndarray, np.ndarray]:
    """All preprocessed windows of one modality (0 = new, 1 = old) with labels. Shapes: -> (N, C, T), (N,)."""
    xs, ys = [], []
    for batch in windows.batches(256):
        xs.append(batch[which])
        ys.append(batch[2])
    return np.concatenate(xs), np.concatenate(ys)


# --- models -------------------------------------------------------------------------------------------------
def prepare_demo_models(cfg: RunConfig, run_dir: Path, windows: dict[str, Any], spec_new: SignalSpec,
                        spec_old: SignalSpec) -> None:
    """Train the demo's old model (labels, train split) and pretrain its new encoder (no labels); point cfg at them."""
    from edgebridge.demo import pretrain_new_model, save_demo_models, train_old_model

    x_old, y = stack_split(windows["train"], 1)
    x_val, y_val = stack_split(windows["val"], 1)
    torch.manual_seed(cfg.train.seed)  # the random init is part of the run: same seed, same models
    old_backbone = get_backbone(cfg.old.backbone, spec=spec_old, **cfg.old.kwargs)
    old = train_old_model(old_backbone, tuple(cfg.old.classes or ()), x_old, y, x_val, y_val, cfg.demo.old_epochs,
                          cfg.train.seed)
    x_new, _ = stack_split(windows["train"], 0)
    torch.manual_seed(cfg.train.seed + 1)
    new = pretrain_new_model(get_backbone(cfg.new.backbone, spec=spec_new, **cfg.new.kwargs), x_new,
                             spec_new.fs_hz, cfg.demo.new_epochs, cfg.train.seed)
    use_demo_models(cfg, save_demo_models(run_dir / "models", old, new))


def use_demo_models(cfg: RunConfig, paths: dict[str, Path]) -> None:
    """Point the run config at the demo's saved old backbone, old head and new backbone."""
    cfg.old.checkpoint, cfg.old.head, cfg.new.checkpoint = str(paths["old"]), str(paths["head"]), str(paths["new"])


@dataclass
class FrozenModels:
    new: Backbone
    old: Backbone
    head: ClassifierHead
    new_ref: ModelRef
    old_ref: ModelRef


def load_models(cfg: RunConfig, spec_new: SignalSpec, spec_old: SignalSpec) -> FrozenModels:
    """Both frozen backbones (strictly loaded) and the old model's head, with path + sha256 provenance."""
    if cfg.old.head is None:
        raise ValueError("old.head is required: the old model must already solve the task (a trained linear head); "
                         "give old.classes and labelled train/val splits to have it fitted")

    def ref(section: Any) -> ModelRef:
        sha = sha256_file(section.checkpoint) if section.checkpoint else None
        head_sha = sha256_file(section.head) if section.head else None
        return ModelRef(section.backbone, dict(section.kwargs), section.checkpoint, sha, section.head, head_sha,
                        section.trust_checkpoint)

    new_ref, old_ref = ref(cfg.new), ref(cfg.old)
    new = build_backbone(cfg.new.backbone, spec_new, cfg.new.kwargs, cfg.new.checkpoint, None,
                         cfg.new.trust_checkpoint)
    old = build_backbone(cfg.old.backbone, spec_old, cfg.old.kwargs, cfg.old.checkpoint, None,
                         cfg.old.trust_checkpoint)
    classes = tuple(cfg.old.classes) if cfg.old.classes else None
    head = load_head(cfg.old.head, old.probe()[-1].out_dim, classes)
    for name, value, backbone in (("in_layer", cfg.bridge.in_layer, new), ("out_layer", cfg.bridge.out_layer, old)):
        if value != "auto":
            backbone.check_block_index(int(value), f"bridge.{name}")
    return FrozenModels(new, old, head, new_ref, old_ref)


# --- stages -------------------------------------------------------------------------------------------------
def features_for(run_dir: Path, models: FrozenModels, windows: Any, cfg: RunConfig) -> FeatureSet:
    """Cached frozen features of ``windows``, computed on the training device."""
    device = resolve_device(cfg.train.device)
    for module in (models.new, models.old, models.head):
        module.to(device)
    cache_root = run_dir.parent / ".edgebridge-cache" / "features"
    return cached_features(cache_root, models.new, models.old, models.head, windows, cfg.train.batch_size, device)


def run_selection(cfg: RunConfig, run_dir: Path, pair: FeatureSet) -> Selection:
    """Stage-1 probe + stage-2 CKA on the pair split's cached features; writes selection.json and PNGs."""
    from edgebridge.plots import plot_selection

    fixed_in = None if cfg.bridge.in_layer == "auto" else int(cfg.bridge.in_layer)
    fixed_out = None if cfg.bridge.out_layer == "auto" else int(cfg.bridge.out_layer)
    selection = select_positions(pair.new_pooled, pair.old_in_pooled, np.asarray(pair.pseudo), cfg.bridge.probe_folds,
                                 cfg.train.seed, fixed_in, fixed_out)
    atomic_write_json(run_dir / "selection.json", selection.to_dict())
    plot_selection(selection.probe_f1, selection.cka, selection.in_layer, selection.out_layer, run_dir)
    return selection


def run_training(cfg: RunConfig, run_dir: Path, models: FrozenModels, selection: Selection, pair: FeatureSet,
                 val: FeatureSet, resume: bool = True) -> dict[str, Any]:
    """Initialise the bridge (randreal prototypes from real old block-l features) and train it on cached features."""
    from edgebridge.plots import plot_training

    bcfg = BridgeConfig.for_models(models.new, models.old, selection.in_layer, selection.out_layer, cfg.bridge.rank,
                                   cfg.bridge.n_prototypes, models.head.class_names, models.new_ref, models.old_ref,
                                   cfg.bridge.prototype_init)
    torch.manual_seed(cfg.train.seed)
    bridge = make_bridge(bcfg)
    if bcfg.prototype_init == "randreal":
        rows = torch.from_numpy(np.array(pair.old_in_rows[bcfg.out_layer]))
        bridge.init_prototypes(rows, torch.Generator().manual_seed(cfg.train.seed))
    suffix = OldSuffix(models.old, bcfg.out_layer)
    m = bcfg.in_layer
    result = fit(bridge, suffix, (pair.new_pooled[m], pair.old_last), (val.new_pooled[m], val.old_last), cfg.train,
                 run_dir, on_best=lambda b: save_bridge(run_dir / "bridge", b, bcfg), resume=resume)
    plot_training(result.history, run_dir / "training_curves.png")
    return {"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss, "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early, "train_seconds": result.seconds}


@torch.no_grad()
def evaluate_run(run_dir: Path, test: Any | None = None) -> dict[str, Any]:
    """Held-out subjects: old model on old data (oracle), bridged model on NEW data only, chance."""
    from edgebridge.runs import run_windows

    model, bcfg = load_bridged(run_dir / "bridge")
    test = test if test is not None else run_windows(run_dir, "test")
    if len(test) == 0:
        raise ValueError("the test split has no labelled windows")
    k = len(bcfg.class_names)
    oracle = TaskModel(model.suffix.backbone, model.head).eval()
    y_true, y_bridged, y_oracle = [], [], []
    for x_new, x_old, y in test.batches(128):
        y_true.append(y)
        y_bridged.append(model(torch.from_numpy(x_new)).argmax(1).numpy())
        y_oracle.append(oracle(torch.from_numpy(x_old)).argmax(1).numpy())
    y_true = np.concatenate(y_true)
    n_bridge, n_frozen = trainable_fraction(model)
    return {
        "oracle": classification_metrics(y_true, np.concatenate(y_oracle), k),
        "bridged": classification_metrics(y_true, np.concatenate(y_bridged), k),
        "chance": {"balanced_accuracy": 1.0 / k},
        "trainable_params": n_bridge, "frozen_params": n_frozen, "trainable_share": n_bridge / n_frozen,
        "positions": {"in_layer": bcfg.in_layer, "out_layer": bcfg.out_layer},
        "class_names": list(bcfg.class_names), "n_test_windows": int(y_true.size),
        "test_subjects": sorted(set(test.subjects.tolist())),
    }


def run_pipeline(cfg: RunConfig, run_dir: Path, stop_after: str = "evaluate", resume: bool = True) -> dict[str, Any]:
    """select → train → evaluate (stop_after ∈ {"select", "train", "evaluate"}); returns the summary."""
    t0 = time.perf_counter()
    spec_new, spec_old = resolve_specs(cfg)
    windows = build_windows(cfg, spec_new, spec_old)
    fit_head = not cfg.demo.enabled and cfg.old.head is None and bool(cfg.old.classes)
    for split in ("pair", "val") + (("train",) if cfg.demo.enabled or fit_head else ()):
        if len(windows[split]) == 0:
            raise ValueError(f"the {split} split has no windows; check data.split_fractions and the recordings")
    if cfg.demo.enabled:
        from edgebridge.demo import demo_model_paths

        saved = demo_model_paths(run_dir / "models")
        if all(p.is_file() for p in saved.values()):  # a resumed run keeps its demo models
            use_demo_models(cfg, saved)
        else:
            log.info("training the demo's frozen models (old: labelled ECG; new: label-free PPG pretext)")
            prepare_demo_models(cfg, run_dir, windows, spec_new, spec_old)
    elif fit_head:  # the paper's stage 1 (g_old): the frozen old model's linear head, before anything reads it
        from edgebridge.old_head import fit_old_head

        cfg.old.head = str(fit_old_head(cfg, run_dir, windows, spec_old)[0])
    write_run_info(run_dir, config=cfg.to_dict(), status="running")
    atomic_write_text(run_dir / "config.toml", config_to_toml(cfg))
    models = load_models(cfg, spec_new, spec_old)
    pair = features_for(run_dir, models, windows["pair"], cfg)
    selection = run_selection(cfg, run_dir, pair)
    summary: dict[str, Any] = {"run_dir": str(run_dir), "positions": {"in_layer": selection.in_layer,
                                                                        "out_layer": selection.out_layer}}
    if stop_after != "select":
        val = features_for(run_dir, models, windows["val"], cfg)
        summary["training"] = run_training(cfg, run_dir, models, selection, pair, val, resume)
        if stop_after == "evaluate":
            summary.update(evaluate_run(run_dir, windows["test"]))
    summary["seconds"] = time.perf_counter() - t0
    atomic_write_json(run_dir / "metrics.json", summary)
    write_run_info(run_dir, status=f"done:{stop_after}")
    return summary
