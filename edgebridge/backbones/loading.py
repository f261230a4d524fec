"""Rebuild frozen models from a ModelRef: registry factory + weights (+ task head), hashes checked."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from edgebridge.backbones.base import Backbone, ClassifierHead
from edgebridge.backbones.registry import get_backbone_entry
from edgebridge.backbones.weights import CheckpointError, load_strict, read_state_dict
from edgebridge.io import sha256_file
from edgebridge.spec import SignalSpec

log = logging.getLogger(__name__)


def build_backbone(name: str, spec: SignalSpec | None, kwargs: dict[str, Any] | None = None,
                   checkpoint: str | Path | None = None, sha256: str | None = None,
                   trust_pickle: bool = False) -> Backbone:
    """Build registered backbone ``name`` for ``spec`` and load its weights (random init when no checkpoint)."""
    entry = get_backbone_entry(name)
    kwargs = dict(kwargs or {})
    backbone = entry.factory(spec=spec, **kwargs) if spec is not None else entry.factory(**kwargs)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        check_hash(checkpoint, sha256)
        if entry.load_weights is not None:
            entry.load_weights(backbone, checkpoint, trust_pickle=trust_pickle)
        else:
            load_strict(backbone, read_state_dict(checkpoint, trust_pickle=trust_pickle), what=str(checkpoint))
    else:
        log.warning("backbone '%s' has no checkpoint: random initialisation", name)
    return backbone.freeze()


def check_hash(path: Path, sha256: str | None) -> None:
    """Raise when ``path`` no longer has the hash recorded at training time."""
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise CheckpointError(f"{path} changed since it was recorded (sha256 {actual[:12]}… != {sha256[:12]}…)")


def save_head(path: str | Path, head: ClassifierHead) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(path),
              metadata={"class_names": "\n".join(head.class_names)})
    return path


def load_head(path: str | Path, in_dim: int, class_names: tuple[str, ...] | None = None,
              sha256: str | None = None) -> ClassifierHead:
    """Load a linear task head saved by :func:`save_head` (class names come from its metadata if not given)."""
    from safetensors import safe_open

    path = Path(path)
    check_hash(path, sha256)
    if class_names is None:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if "class_names" not in meta:
            raise CheckpointError(f"{path} has no class_names metadata; give the classes in the config")
        class_names = tuple(meta["class_names"].split("\n"))
    head = ClassifierHead(in_dim, class_names)
    load_strict(head, load_file(str(path)), what=str(path))
    head.requires_grad_(False).eval()
    return head


def save_backbone(path: str | Path, module: nn.Module) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path
