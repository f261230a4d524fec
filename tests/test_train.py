"""Frozen stays frozen, the bridge learns, checkpoints round-trip without backbone weights, resume is exact."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_bridged

from edgebridge.backbones.loading import save_backbone, save_head
from edgebridge.backbones.weights import CheckpointError, CheckpointMismatch
from edgebridge.bridge.checkpoint import load_bridged, save_bridge
from edgebridge.bridge.compose import OldSuffix
from edgebridge.bridge.config import BridgeConfig, ModelRef
from edgebridge.io import sha256_file
from edgebridge.train import TrainConfig, cosine_loss, fit


def _cached_data(new, old, m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    x_new = torch.randn(n, *new.spec.input_shape, generator=g)
    x_old = torch.randn(n, *old.spec.input_shape, generator=g)
    with torch.no_grad():
        z = new.pool(new.run_blocks(new.embed(x_new), 0, m + 1))
        target = old.to_btd(old(x_old)).flatten(1)  # the cache's contract: canonical layout
    return z.numpy(), target.numpy()


def _setup(tmp_path: Path, epochs: int = 3, **cfg_kw):
    model, new, old, head, bridge = tiny_bridged(1, 2, random_b=False)
    train = _cached_data(new, old, 1, 40, 0)
    val = _cached_data(new, old, 1, 16, 1)
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=1e-2, warmup_steps=0, patience=100, **cfg_kw)
    return model, new, old, head, bridge, train, val, cfg


def test_frozen_models_never_change_and_get_no_grad(tmp_path: Path) -> None:
    model, new, old, head, bridge, train, val, cfg = _setup(tmp_path)
    before = {k: v.clone() for k, v in {**new.state_dict(), **{f"old.{k}": v for k, v in old.state_dict().items()},
                                        **{f"head.{k}": v for k, v in head.state_dict().items()}}.items()}
    bridge_before = copy.deepcopy(bridge.state_dict())
    fit(bridge, OldSuffix(old, 2), train, val, cfg, tmp_path, on_best=lambda b: None, progress=False)
    after = {**new.state_dict(), **{f"old.{k}": v for k, v in old.state_dict().items()},
             **{f"head.{k}": v for k, v in head.state_dict().items()}}
    for key, value in before.items():
        assert torch.equal(value, after[key]), f"frozen tensor {key} changed"
    for module in (new, old, head):
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())
        assert not module.training
    assert not torch.equal(bridge_before["B"], bridge.state_dict()["B"]), "bridge did not learn"


def test_training_reduces_alignment_loss(tmp_path: Path) -> None:
    _, _, old, _, bridge, train, val, cfg = _setup(tmp_path, epochs=8)
    result = fit(bridge, OldSuffix(old, 2), train, val, cfg, tmp_path, on_best=lambda b: None, progress=False)
    first, best = result.history[0]["train_loss"], min(h["train_loss"] for h in result.history[1:])
    assert best < 0.5 * first
    with torch.no_grad():
        pred = OldSuffix(old, 2).last_btd(bridge(torch.from_numpy(train[0])))
        assert float(cosine_loss(pred, torch.from_numpy(train[1]))) == pytest.approx(
            result.history[-1]["train_loss"], abs=0.05)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    _, _, old, _, bridge, train, val, cfg = _setup(tmp_path, epochs=4, schedule="constant")
    full_bridge = copy.deepcopy(bridge)
    fit(full_bridge, OldSuffix(old, 2), train, val, cfg, tmp_path / "full", on_best=lambda b: None, progress=False)
    half_cfg = TrainConfig(**{**cfg.__dict__, "epochs": 2})
    fit(bridge, OldSuffix(old, 2), train, val, half_cfg, tmp_path / "cut", on_best=lambda b: None, progress=False)
    resumed = copy.deepcopy(bridge)
    result = fit(resumed, OldSuffix(old, 2), train, val, cfg, tmp_path / "cut", on_best=lambda b: None,
                 progress=False)
    assert result.epochs_run == 4
    for key, value in full_bridge.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, atol=1e-6, rtol=1e-5)


def _write_run(tmp_path: Path):
    model, new, old, head, bridge = tiny_bridged(1, 2)
    paths = {"new": save_backbone(tmp_path / "new.safetensors", new),
             "old": save_backbone(tmp_path / "old.safetensors", old),
             "head": save_head(tmp_path / "head.safetensors", head)}
    refs = {role: ModelRef(name, {}, str(paths[role]), sha256_file(paths[role]),
                           str(paths["head"]) if role == "old" else None,
                           sha256_file(paths["head"]) if role == "old" else None)
            for role, name in (("new", "tiny_transformer"), ("old", "tiny_cnn"))}
    cfg = BridgeConfig.for_models(new, old, 1, 2, 4, 6, head.class_names, refs["new"], refs["old"])
    save_bridge(tmp_path / "bridge", bridge, cfg)
    return model, paths


def test_checkpoint_round_trip_has_no_backbone_weights(tmp_path: Path) -> None:
    model, _ = _write_run(tmp_path)
    loaded, cfg = load_bridged(tmp_path / "bridge")
    x = torch.randn(3, *model.prefix.backbone.spec.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    files = sorted(p.name for p in (tmp_path / "bridge").iterdir())
    assert files == ["backbones.json", "bridge.safetensors", "bridge_config.json"]
    from safetensors.torch import load_file

    assert set(load_file(str(tmp_path / "bridge" / "bridge.safetensors"))) == {"A", "B", "prototypes"}
    assert cfg.spec_new == model.prefix.backbone.spec


def test_checkpoint_that_does_not_fit_is_a_named_error(tmp_path: Path) -> None:
    _, paths = _write_run(tmp_path)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "bridge" / "bridge.safetensors"))
    save_file({"A": weights["A"], "B": weights["B"][:5]}, str(tmp_path / "bridge" / "bridge.safetensors"))
    with pytest.raises(CheckpointMismatch, match="missing keys: prototypes.*mis-shaped keys: B"):
        load_bridged(tmp_path / "bridge")


def test_changed_frozen_weights_are_detected(tmp_path: Path) -> None:
    _, paths = _write_run(tmp_path)
    data = bytearray(paths["old"].read_bytes())
    data[-1] ^= 0xFF
    paths["old"].write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="changed since it was recorded"):
        load_bridged(tmp_path / "bridge")
