"""The bridge: a prototype network with low-rank weights (``protoLRFC`` of BioX-Bridge).

    w = reshape(z Aᵀ Bᵀ, (Np, N_old))          A ∈ R^{r×d_new} (kaiming), B ∈ R^{(Np·N_old)×r} (zeros)
    h̃ = P · w                                   P ∈ R^{d_old×Np} (prototypes)

Only r numbers per window cross the bridge; B starts at zero, so the bridge outputs exactly 0 at step 0.
The output is returned token-major, ``(B, N_old, d_old)``, the canonical layout every adapter converts from
(the paper's ``(B, d_old, N_old)`` transposed — the upstream LaBraM reshape-for-transpose defect cannot occur).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ProtoLowRankBridge(nn.Module):
    """Maps one pooled new-model vector to a full old-model hidden state.

    Args:
        d_in: pooled feature size of the new model's block m.
        d_out: feature size of the old model's block-l input.
        n_tokens: tokens (or time steps) of the old model's block-l input.
        rank: r, the width of the low-rank bottleneck.
        n_prototypes: Np, number of prototype vectors.

    Shapes: z: (B, d_in) -> (B, n_tokens, d_out).
    """

    def __init__(self, d_in: int, d_out: int, n_tokens: int, rank: int, n_prototypes: int) -> None:
        super().__init__()
        for name, value in (("d_in", d_in), ("d_out", d_out), ("n_tokens", n_tokens), ("rank", rank),
                            ("n_prototypes", n_prototypes)):
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.d_in, self.d_out, self.n_tokens = d_in, d_out, n_tokens
        self.rank, self.n_prototypes = rank, n_prototypes
        self.A = nn.Parameter(torch.empty(rank, d_in))
        self.B = nn.Parameter(torch.zeros(n_prototypes * n_tokens, rank))
        self.prototypes = nn.Parameter(torch.randn(d_out, n_prototypes))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.d_in:
            raise ValueError(f"bridge expects pooled features of shape (B, {self.d_in}), got {tuple(z.shape)}")
        weights = (z @ self.A.t()) @ self.B.t()  # (B, Np·N)
        weights = weights.view(z.shape[0], self.n_prototypes, self.n_tokens)
        return torch.einsum("dp,bpn->bnd", self.prototypes, weights)

    @torch.no_grad()
    def init_prototypes(self, token_rows: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """``randreal``: set the prototypes to randomly chosen real old-model block-l token vectors.

        Args:
            token_rows: candidate vectors, (M, d_out), e.g. canonical block-l inputs of real windows flattened
                over tokens (see ``Backbone.to_btd``), so both BTD and BCL backbones give feature vectors.
        """
        if token_rows.ndim != 2 or token_rows.shape[1] != self.d_out:
            raise ValueError(f"prototype candidates must be (M, {self.d_out}), got {tuple(token_rows.shape)}")
        if token_rows.shape[0] < self.n_prototypes:
            raise ValueError(f"need at least {self.n_prototypes} candidate vectors, got {token_rows.shape[0]}")
        idx = torch.randperm(token_rows.shape[0], generator=generator)[: self.n_prototypes]
        self.prototypes.copy_(token_rows[idx].t().to(self.prototypes))


def bridge_param_count(d_in: int, d_out: int, n_tokens: int, rank: int, n_prototypes: int) -> int:
    """Trainable parameters of a bridge: r·d_in + Np·N·r + d_out·Np."""
    return rank * d_in + n_prototypes * n_tokens * rank + d_out * n_prototypes
