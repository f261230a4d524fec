"""GenericBackbone: wrap any ``nn.Module`` whose blocks form an ``nn.ModuleList``/``nn.Sequential``.

A user points a config at ``package.module:factory`` plus the attribute path of the block list (and optionally a
stem to run before it and the old model's head); no adapter code is needed as long as each block maps one
tensor to one tensor (a tuple output's first element is taken).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from edgebridge.backbones.base import Backbone
from edgebridge.backbones.registry import register_backbone
from edgebridge.spec import SignalSpec


def import_factory(ref: str) -> Any:
    """Resolve ``"package.module:attr"`` with importlib (never eval)."""
    if ref.count(":") != 1:
        raise ValueError(f"factory reference '{ref}' must look like 'package.module:factory'")
    mod_name, attr = ref.split(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module '{mod_name}' for factory '{ref}': {exc}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"module '{mod_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    return obj


class GenericBackbone(Backbone):
    """Adapter around a user module.

    Args:
        module: the model.
        spec: its input SignalSpec.
        blocks_path: dotted path to the block list inside ``module`` (e.g. ``"encoder.layers"``).
        stem_path: dotted path to a module run on the input before block 0 (None: the input goes straight in).
        head_path: dotted path to the task head applied to the readout (exposed as ``self.head``), or None.
        layout: ``"BTD"`` or ``"BCL"`` — the layout of the hidden states between blocks.
    """

    def __init__(self, module: nn.Module, spec: SignalSpec, blocks_path: str, stem_path: str | None = None,
                 head_path: str | None = None, layout: str = "BTD") -> None:
        self.layout = layout
        super().__init__(spec)
        self.model = module
        self.blocks_path = f"model.{blocks_path}"
        self._stem_path = f"model.{stem_path}" if stem_path else None
        self._head_path = f"model.{head_path}" if head_path else None
        _ = self.block_list  # validates the path and type now, not at first forward

    @property
    def head(self) -> nn.Module | None:
        return self.get_submodule(self._head_path) if self._head_path else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_submodule(self._stem_path)(x) if self._stem_path else x

    def run_block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        out = self.block_list[i](h)
        return out[0] if isinstance(out, (tuple, list)) else out


@register_backbone("generic", modality="any", description="any nn.Module given 'package.module:factory' and a "
                   "block-list path", licence="user's", tiny_kwargs={
                       "factory": "edgebridge.backbones.generic:example_module", "blocks_path": "layers",
                       "stem_path": "stem", "head_path": "head", "layout": "BCL"})
def generic(factory: str, blocks_path: str, spec: SignalSpec | None = None, stem_path: str | None = None,
            head_path: str | None = None, layout: str = "BTD", factory_kwargs: dict[str, Any] | None = None
            ) -> GenericBackbone:
    from edgebridge.backbones.tiny import default_spec

    spec = spec or default_spec()
    module = import_factory(factory)(**(factory_kwargs or {}))
    if not isinstance(module, nn.Module):
        raise TypeError(f"factory '{factory}' returned {type(module).__name__}, not an nn.Module")
    return GenericBackbone(module, spec, blocks_path, stem_path, head_path, layout)


def example_module(n_channels: int = 1, width: int = 8, n_classes: int = 3) -> nn.Module:
    """A plain user-style model (stem, Sequential of conv blocks, head) used in docs and tests."""

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv1d(n_channels, width, 5, padding=2)
            self.layers = nn.Sequential(*[nn.Sequential(nn.Conv1d(width, width, 5, padding=2), nn.ReLU())
                                          for _ in range(3)])
            self.head = nn.Linear(width, n_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.layers(self.stem(x)).mean(-1))

    return _Net()
