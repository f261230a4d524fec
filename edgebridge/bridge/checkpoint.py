"""The bridge directory: ``bridge_config.json`` + ``bridge.safetensors`` (bridge weights only) + ``backbones.json``.

Frozen backbone weights are never copied into it (PEFT style): they are referenced by path and sha256, and
rebuilt through the registry on load.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from edgebridge.backbones.base import Backbone
from edgebridge.backbones.loading import build_backbone, load_head
from edgebridge.backbones.weights import CheckpointError, load_strict
from edgebridge.bridge.compose import BridgedModel
from edgebridge.bridge.config import BridgeConfig, ModelRef
from edgebridge.bridge.layers import ProtoLowRankBridge
from edgebridge.io import atomic_write_bytes, atomic_write_json, atomic_write_text

CONFIG_FILE, WEIGHTS_FILE, BACKBONES_FILE = "bridge_config.json", "bridge.safetensors", "backbones.json"


def make_bridge(config: BridgeConfig) -> ProtoLowRankBridge:
    return ProtoLowRankBridge(config.d_in, config.d_out, config.n_tokens, config.rank, config.n_prototypes)


def save_bridge(bridge_dir: str | Path, bridge: ProtoLowRankBridge, config: BridgeConfig) -> Path:
    """Write the three files of a bridge directory, each atomically."""
    bridge_dir = Path(bridge_dir)
    bridge_dir.mkdir(parents=True, exist_ok=True)
    tmp = bridge_dir / f".{WEIGHTS_FILE}.staging"
    save_file({k: v.detach().cpu().contiguous() for k, v in bridge.state_dict().items()}, str(tmp))
    atomic_write_bytes(bridge_dir / WEIGHTS_FILE, tmp.read_bytes())
    tmp.unlink()
    atomic_write_text(bridge_dir / CONFIG_FILE, config.to_json() + "\n")
    atomic_write_json(bridge_dir / BACKBONES_FILE, {
        role: {"backbone": ref.backbone, "checkpoint": ref.checkpoint, "sha256": ref.sha256, "head": ref.head,
               "head_sha256": ref.head_sha256}
        for role, ref in (("new", config.new_model), ("old", config.old_model))})
    return bridge_dir


def load_bridge(bridge_dir: str | Path) -> tuple[ProtoLowRankBridge, BridgeConfig]:
    """Bridge weights and config; a key or shape that does not fit raises CheckpointMismatch naming it."""
    bridge_dir = Path(bridge_dir)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (bridge_dir / name).is_file():
            raise CheckpointError(f"{bridge_dir} is not a bridge directory: {name} is missing")
    try:
        config = BridgeConfig.from_json((bridge_dir / CONFIG_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{bridge_dir / CONFIG_FILE} is not valid JSON: {exc}") from exc
    bridge = make_bridge(config)
    load_strict(bridge, load_file(str(bridge_dir / WEIGHTS_FILE)), what=str(bridge_dir / WEIGHTS_FILE))
    return bridge, config


def load_frozen(ref: ModelRef, spec, trust_pickle: bool = False) -> Backbone:
    """Rebuild a frozen model; a pickle the user trusted at training time (recorded in ``ref``) stays trusted."""
    return build_backbone(ref.backbone, spec, ref.kwargs, ref.checkpoint, ref.sha256, trust_pickle or ref.trust_pickle)


def load_bridged(bridge_dir: str | Path, trust_pickle: bool = False) -> tuple[BridgedModel, BridgeConfig]:
    """Rebuild the deployable chain (frozen, eval) from a bridge directory and the referenced model weights."""
    bridge, config = load_bridge(bridge_dir)
    new = load_frozen(config.new_model, config.spec_new, trust_pickle)
    old = load_frozen(config.old_model, config.spec_old, trust_pickle)
    check_fits(config, new, old)
    if config.old_model.head is None:
        raise CheckpointError("the old model has no task head recorded in bridge_config.json")
    head = load_head(config.old_model.head, old.probe()[-1].out_dim, config.class_names, config.old_model.head_sha256)
    model = BridgedModel(new, config.in_layer, bridge, old, config.out_layer, head)
    model.requires_grad_(False).eval()
    return model, config


def check_fits(config: BridgeConfig, new: Backbone, old: Backbone) -> None:
    """Raise when the probed model sizes differ from the ones the bridge was trained for."""
    d_in = new.probe()[new.check_block_index(config.in_layer, "in_layer")].out_dim
    target = old.probe()[old.check_block_index(config.out_layer, "out_layer")]
    got, want = (d_in, target.in_dim, target.in_tokens), (config.d_in, config.d_out, config.n_tokens)
    if got != want:
        raise CheckpointError(f"bridge was trained for (d_in, d_out, n_tokens) = {want}, models give {got}")


def trainable_fraction(model: BridgedModel) -> tuple[int, int]:
    """(bridge parameters, parameters of the two frozen models)."""
    bridge = sum(p.numel() for p in model.bridge.parameters())
    frozen = sum(p.numel() for p in model.prefix.backbone.parameters()) + \
        sum(p.numel() for p in model.suffix.backbone.parameters()) + sum(p.numel() for p in model.head.parameters())
    return bridge, frozen


__all__ = ["load_bridge", "load_bridged", "make_bridge", "save_bridge", "trainable_fraction"]
