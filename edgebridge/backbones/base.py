"""Backbone: a frozen encoder seen as ``embed → blocks[0..L) → readout``.

The bridge reads the pooled output of a NEW-model block m and writes the input of an OLD-model block l, so every
adapter exposes exactly these pieces. Hidden states travel in the adapter's native layout; ``to_btd`` /
``from_btd`` convert at that one boundary to the canonical ``(B, N, D)`` (tokens × features) that the bridge,
pooling and CKA use. For conv backbones (layout ``"BCL"``) N is time and D is channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from edgebridge.spec import SignalSpec

LAYOUTS = ("BTD", "BCL")


@dataclass(frozen=True)
class BlockDims:
    """Canonical ``(N, D)`` of a block's input and output, measured by a probe forward."""

    in_tokens: int
    in_dim: int
    out_tokens: int
    out_dim: int


class Backbone(nn.Module):
    """Base class of every adapter.

    Subclasses set ``layout`` and ``blocks_path`` and implement ``embed``; they override ``run_block`` when a block
    needs extra arguments or returns a tuple, and ``to_btd``/``from_btd`` when the native layout is not plain
    BTD/BCL (e.g. variables folded into the batch). ``readout`` is what a task head sees (default: the paper's
    mean over tokens of the last block's output).

    Shapes: embed: (B, C, T) -> native h; run_blocks: native -> native; to_btd: native -> (B, N, D).
    """

    layout: str = "BTD"
    blocks_path: str = "blocks"

    def __init__(self, spec: SignalSpec) -> None:
        super().__init__()
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout}")
        self.spec = spec
        self._dims: list[BlockDims] | None = None

    # --- structure -------------------------------------------------------------------------------------------
    @property
    def block_list(self) -> Sequence[nn.Module]:
        """The block container at ``blocks_path`` (named so that adapters may own an attribute called ``blocks``)."""
        mod = self.get_submodule(self.blocks_path)
        if not isinstance(mod, (nn.ModuleList, nn.Sequential)):
            raise TypeError(f"{self.blocks_path} is a {type(mod).__name__}, expected nn.ModuleList or nn.Sequential")
        return mod

    @property
    def n_blocks(self) -> int:
        return len(self.block_list)

    def block_name(self, i: int) -> str:
        return f"{self.blocks_path}[{i}]"

    def check_block_index(self, i: int, what: str) -> int:
        """Raise IndexError naming ``what`` when ``i`` is not a block index of this backbone."""
        if not (isinstance(i, int) and 0 <= i < self.n_blocks):
            raise IndexError(f"{what} = {i} is out of range: {type(self).__name__} has blocks 0..{self.n_blocks - 1}")
        return i

    # --- computation -----------------------------------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Model input (B, C, T) → input of block 0, native layout."""
        raise NotImplementedError

    def run_block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.block_list[i](h)

    def run_blocks(self, h: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Run blocks ``start .. stop-1`` on the native hidden state ``h`` (input of block ``start``)."""
        for i in range(start, stop):
            h = self.run_block(i, h)
        return h

    def to_btd(self, h: torch.Tensor) -> torch.Tensor:
        if self.layout == "BCL":
            return h.transpose(1, 2)
        return h

    def from_btd(self, h: torch.Tensor) -> torch.Tensor:
        if self.layout == "BCL":
            return h.transpose(1, 2)
        return h

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Mean over tokens/time of a native hidden state. Shapes: native -> (B, D)."""
        return self.to_btd(h).mean(dim=1)

    def readout(self, h_last: torch.Tensor) -> torch.Tensor:
        """Features a task head sees, from the last block's output. Shapes: native -> (B, D)."""
        return self.pool(h_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model input → last block's output (native layout): what the bridge loss aligns."""
        return self.run_blocks(self.embed(x), 0, self.n_blocks)

    # --- introspection ---------------------------------------------------------------------------------------
    def example_input(self, batch: int = 2) -> torch.Tensor:
        return torch.zeros(batch, *self.spec.input_shape)

    @torch.no_grad()
    def probe(self) -> list[BlockDims]:
        """Canonical ``(N, D)`` of every block's input and output, from one zero forward (cached)."""
        if self._dims is None:
            was_training = self.training
            self.eval()
            try:
                param = next(self.parameters(), None)
                x = self.example_input(2)
                if param is not None:
                    x = x.to(param.device, param.dtype)
                h = self.embed(x)
                dims = []
                for i in range(self.n_blocks):
                    n_in, d_in = self.to_btd(h).shape[1:]
                    h = self.run_block(i, h)
                    n_out, d_out = self.to_btd(h).shape[1:]
                    dims.append(BlockDims(int(n_in), int(d_in), int(n_out), int(d_out)))
            finally:
                self.train(was_training)
            self._dims = dims
        return list(self._dims)

    def freeze(self) -> Backbone:
        """Frozen means eval mode and no gradients, for every parameter."""
        self.requires_grad_(False)
        self.eval()
        return self


class ClassifierHead(nn.Module):
    """Linear task head on a backbone's readout features. Shapes: (B, D) -> (B, K) logits."""

    def __init__(self, in_dim: int, class_names: Sequence[str]) -> None:
        super().__init__()
        self.class_names = tuple(class_names)
        self.fc = nn.Linear(in_dim, len(self.class_names))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z)


class TaskModel(nn.Module):
    """A backbone plus its task head: the OLD model that already solves the task. Shapes: (B, C, T) -> (B, K)."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.readout(self.backbone(x)))
