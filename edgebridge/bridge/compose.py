"""BridgedModel: new-modality input → new prefix → pool → bridge → old suffix → head. No hooks, no old data.

The upstream evaluation ran both full models and swapped block l's input with a forward pre-hook, so it needed the
paired old-modality window at test time. Here the chain is sliced: only f_new[0..m] and f_old[l..L) run, and the
result equals the hook-injected full forward (tested to 1e-5).
"""

from __future__ import annotations

import torch
from torch import nn

from edgebridge.backbones.base import Backbone
from edgebridge.bridge.layers import ProtoLowRankBridge


class NewPrefix(nn.Module):
    """f_new[0..m] then mean pooling. Shapes: (B, C, T) -> (B, d_in)."""

    def __init__(self, backbone: Backbone, in_layer: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.in_layer = backbone.check_block_index(in_layer, "in_layer")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        return b.pool(b.run_blocks(b.embed(x), 0, self.in_layer + 1))


class OldSuffix(nn.Module):
    """f_old[l..L) from a canonical hidden state. Shapes: (B, N, D) -> native last-block output."""

    def __init__(self, backbone: Backbone, out_layer: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.out_layer = backbone.check_block_index(out_layer, "out_layer")

    def forward(self, h_btd: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        return b.run_blocks(b.from_btd(h_btd), self.out_layer, b.n_blocks)

    def last_btd(self, h_btd: torch.Tensor) -> torch.Tensor:
        """The last block's output in the canonical layout — what the bridge loss compares. Shapes: -> (B, N, D)."""
        return self.backbone.to_btd(self(h_btd))


class BridgedModel(nn.Module):
    """The deployable chain. Shapes: x_new (B, C, T) -> logits (B, K).

    ``last_hidden(x)`` returns the old model's last-block output (what the bridge loss aligns), ``forward`` the
    head's logits.
    """

    def __init__(self, new: Backbone, in_layer: int, bridge: ProtoLowRankBridge, old: Backbone, out_layer: int,
                 head: nn.Module) -> None:
        super().__init__()
        self.prefix = NewPrefix(new, in_layer)
        self.bridge = bridge
        self.suffix = OldSuffix(old, out_layer)
        self.head = head

    def last_hidden(self, x_new: torch.Tensor) -> torch.Tensor:
        return self.suffix(self.bridge(self.prefix(x_new)))

    def forward(self, x_new: torch.Tensor) -> torch.Tensor:
        return self.head(self.suffix.backbone.readout(self.last_hidden(x_new)))


@torch.no_grad()
def hook_injected_forward(new: Backbone, in_layer: int, bridge: ProtoLowRankBridge, old: Backbone, out_layer: int,
                          head: nn.Module, x_new: torch.Tensor, x_old: torch.Tensor) -> torch.Tensor:
    """The paper's evaluation path: both FULL models, block-m output captured and block-l input replaced by hooks.

    Kept as the reference that BridgedModel is tested against and benchmarked with; it needs ``x_old``.
    Shapes: x_new (B, C_new, T_new), x_old (B, C_old, T_old) -> logits (B, K).
    """
    captured: dict[str, torch.Tensor] = {}

    def grab(_mod: nn.Module, _inp: tuple, out: torch.Tensor | tuple) -> None:
        captured["h"] = out[0] if isinstance(out, tuple) else out

    handle = new.block_list[in_layer].register_forward_hook(grab)
    try:
        new(x_new)
    finally:
        handle.remove()
    h_bridge = old.from_btd(bridge(new.pool(captured["h"])))

    def inject(_mod: nn.Module, args: tuple) -> tuple:
        return (h_bridge, *args[1:])

    handle = old.block_list[out_layer].register_forward_pre_hook(inject)
    try:
        last = old(x_old)
    finally:
        handle.remove()
    return head(old.readout(last))
