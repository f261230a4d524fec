"""Transformer pieces shared by several adapters, with the parameter names their official checkpoints use."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SeparateQKVAttention(nn.Module):
    """Multi-head self-attention with separate ``q_proj``/``k_proj``/``v_proj``/``out_proj`` (HuBERT, wav2vec 2.0).

    Shapes: (B, N, D) -> (B, N, D).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        att = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)),
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(att.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """fc1 → GELU → fc2, timm's ViT MLP (LaBraM, NormWear). Shapes: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
