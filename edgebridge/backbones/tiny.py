"""Small built-in encoders: the quickstart's demo models and the test suite's tiny backbones.

``TinyCNN`` is a 1-D ResNet (layout BCL, like PaPaGei); ``TinyTransformer`` a patch transformer (layout BTD,
like HuBERT-ECG/LaBraM). Both are plain modules with no fused kernels, so they export cleanly to ONNX.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgebridge.backbones.base import Backbone
from edgebridge.backbones.registry import register_backbone
from edgebridge.spec import SignalSpec


def default_spec(modality: str = "ppg", fs_hz: float = 50.0, window_s: float = 4.0, n_channels: int = 1) -> SignalSpec:
    """The tests' signal: 4 s at 50 Hz (T=200), z-scored."""
    channels = tuple(f"{modality}{i}" for i in range(n_channels)) if n_channels > 1 else (modality,)
    return SignalSpec(modality=modality, fs_hz=fs_hz, channels=channels, window_s=window_s, stride_s=window_s / 2)


class ResBlock1d(nn.Module):
    """Conv-BN-ReLU-Conv-BN with identity (or strided 1×1) shortcut. Shapes: (B, C_in, L) -> (B, C_out, L/stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 5) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class TinyCNN(Backbone):
    """1-D ResNet: stem conv, then residual blocks; every ``downsample_every``-th block halves time.

    Shapes: (B, C, T) -> native (B, width, L).
    """

    layout = "BCL"
    blocks_path = "blocks"

    def __init__(self, spec: SignalSpec, widths: Sequence[int] = (16, 16, 16, 16), stem_stride: int = 2,
                 downsample_every: int = 2, kernel: int = 5) -> None:
        super().__init__(spec)
        self.stem = nn.Sequential(nn.Conv1d(spec.n_channels, widths[0], 7, stride=stem_stride, padding=3, bias=False),
                                  nn.BatchNorm1d(widths[0]), nn.ReLU())
        blocks, c_in = [], widths[0]
        for i, c_out in enumerate(widths):
            stride = 2 if downsample_every and (i + 1) % downsample_every == 0 else 1
            blocks.append(ResBlock1d(c_in, c_out, stride=stride, kernel=kernel))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + MLP block. Shapes: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class TinyTransformer(Backbone):
    """Patch-embedding transformer. Shapes: (B, C, T) -> native (B, T/patch, dim)."""

    layout = "BTD"
    blocks_path = "blocks"

    def __init__(self, spec: SignalSpec, dim: int = 16, depth: int = 4, heads: int = 2, patch: int = 10,
                 mlp_ratio: float = 2.0) -> None:
        super().__init__(spec)
        if spec.n_times % patch:
            raise ValueError(f"window of {spec.n_times} samples is not a multiple of patch {patch}")
        n_tokens = spec.n_times // patch
        self.patch_embed = nn.Conv1d(spec.n_channels, dim, patch, stride=patch)
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, dim) * 0.02)
        self.blocks = nn.ModuleList([TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x).transpose(1, 2) + self.pos_embed


@register_backbone("tiny_cnn", modality="any", description="built-in 1-D ResNet (layout BCL) for demos and tests",
                   licence="Apache-2.0 (this project)", tiny_kwargs={})
def tiny_cnn(spec: SignalSpec | None = None, widths: Sequence[int] = (16, 16, 16, 16), **kwargs: int) -> TinyCNN:
    return TinyCNN(spec or default_spec(), widths=tuple(widths), **kwargs)


@register_backbone("tiny_transformer", modality="any", description="built-in patch transformer (layout BTD)",
                   licence="Apache-2.0 (this project)", tiny_kwargs={})
def tiny_transformer(spec: SignalSpec | None = None, **kwargs: int) -> TinyTransformer:
    return TinyTransformer(spec or default_spec(), **kwargs)
