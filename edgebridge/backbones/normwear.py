"""NormWear (Luo et al. 2024) as an edgebridge backbone, in plain PyTorch, with its CWT front end inside ``embed``.

Names follow the official repository (github.com/Mobile-Sensing-and-UbiComp-Laboratory/NormWear, ``main_model.py``
and ``modules/normwear.py``): ``NormWearModel.backbone`` is a ``NormWear`` with ``patch_embed.proj`` (Conv2d, patch
(9, 5), 3 input planes), ``cls_token``, ``pos_embed`` (fixed 2-D sin-cos, 1 + 43·13 rows), ``encoder_blocks.N``
(``EncoderLayer``: ``variate_encoder`` = timm ``Block`` — norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2 —
plus ``cls_fusion`` Block on layers 0, 2, 4, … that lets each variable's CLS token attend to the other variables'
CLS tokens), ``norm``, and the MAE decoder (``decoder_embed``, ``mask_token``, ``decoder_pos_embed``,
``decoder_blocks``, ``temporal_recon``, ``spatial_recon``, ``decoder_norm``) carried by the released checkpoint
(``normwear_last_checkpoint-15470-correct.pth``, a flat state dict of ``NormWear``). The decoder is unused here.

Differences from upstream, on purpose (shared/reference/biox_upstream.md §5 NormWear):

* the CWT runs in torch inside ``embed`` with scipy's discretisation (``cwt.py``), not the repo's approximation;
* grid sizes are computed from the conv arithmetic, never by running the patch conv on ``torch.randn`` each
  forward; ``pos_embed`` is bicubically resized only when the grid differs from the pre-training (43, 13) grid;
* the number of variables ``nvar`` is fixed by the SignalSpec and passed to each block, not written into blocks;
* loading is strict (CheckpointMismatch names every bad key) instead of a bare ``try/except`` that prints.

Layouts: native hidden state ``(B·nvar, N, D)`` (variables folded into the batch, N = 1 + h·w);
canonical ``to_btd`` → ``(B, nvar·N, D)``. FOG EMG (3 variables, 3 s at 130 Hz) → N = 560, nvar·N = 1680, D = 768.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgebridge.backbones.base import Backbone
from edgebridge.backbones.cwt import NORMWEAR_WIDTHS, NormWearScalogram
from edgebridge.backbones.layers import Mlp
from edgebridge.backbones.registry import register_backbone
from edgebridge.backbones.weights import load_strict, read_state_dict, strip_prefixes
from edgebridge.spec import SignalSpec

log = logging.getLogger(__name__)

#: Top-level keys of the pre-training decoder (kept in the model by default so the checkpoint loads strictly).
DECODER_KEYS = ("decoder_embed.", "mask_token", "decoder_pos_embed", "decoder_blocks.", "temporal_recon.",
                "spatial_recon.", "decoder_norm.")


def normwear_spec(n_channels: int = 3, fs_hz: float = 130.0, window_s: float = 3.0, stride_s: float = 0.3,
                  modality: str = "emg") -> SignalSpec:
    """BioX-Bridge's FOG EMG input: 3 variables, 3 s at 130 Hz (388 CWT rows → the pre-training 43×13 grid)."""
    return SignalSpec(modality=modality, fs_hz=fs_hz, channels=tuple(f"{modality}{i}" for i in range(n_channels)),
                      window_s=window_s, stride_s=stride_s, norm="zscore")


def sincos_2d(dim: int, grid_hw: tuple[int, int]) -> np.ndarray:
    """MAE's fixed 2-D sin-cos table with a zero CLS row; first half encodes the w (scale) index, second half h.

    Shapes: -> (1 + h·w, dim).
    """
    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    if dim % 4:
        raise ValueError(f"sin-cos position table needs dim divisible by 4, got {dim}")
    w_idx, h_idx = np.meshgrid(np.arange(grid_hw[1]), np.arange(grid_hw[0]))  # row-major over (h, w)
    table = np.concatenate([one_d(dim // 2, w_idx.astype(np.float64)), one_d(dim // 2, h_idx.astype(np.float64))], 1)
    return np.concatenate([np.zeros((1, dim)), table], axis=0)


class Attention(nn.Module):
    """timm ViT attention (no q/k norm). Shapes: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))



class Block(nn.Module):
    """timm ``vision_transformer.Block`` without layer scale / drop path. Shapes: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EncoderLayer(nn.Module):
    """Per-variable transformer block, then (on fusion layers) attention across the variables' CLS tokens.

    Shapes: (B·nvar, N, D) -> (B·nvar, N, D).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, fuse: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.variate_encoder = Block(dim, num_heads, mlp_ratio, eps=eps)
        self.cls_fusion = Block(dim, num_heads, mlp_ratio, eps=eps) if fuse else None

    def forward(self, x: torch.Tensor, nvar: int) -> torch.Tensor:
        x = self.variate_encoder(x)
        if self.cls_fusion is None:
            return x
        bn, n, d = x.shape
        x = x.reshape(bn // nvar, nvar, n, d)
        cls = self.cls_fusion(x[:, :, 0, :]).unsqueeze(2)  # (B, nvar, 1, D): CLS tokens attend across variables
        return torch.cat((cls, x[:, :, 1:, :]), dim=2).reshape(bn, n, d)


class PatchEmbed(nn.Module):
    """Non-overlapping (9, 5) patches of a (3, L, n_scales) scalogram. Shapes: (B', 3, L, F) -> (B', h·w, D)."""

    def __init__(self, patch_hw: tuple[int, int], in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch_hw = patch_hw
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_hw, stride=patch_hw)

    def grid(self, img_hw: tuple[int, int]) -> tuple[int, int]:
        """Output grid of the patch conv for an input of ``img_hw``, by conv arithmetic (no dummy forward)."""
        return ((img_hw[0] - self.patch_hw[0]) // self.patch_hw[0] + 1,
                (img_hw[1] - self.patch_hw[1]) // self.patch_hw[1] + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class SpatialRecon(nn.Module):
    """Decoder head of the MAE (kept for strict loading only). Shapes: (B·nvar, E, L) -> (B, nvar, L)."""

    def __init__(self, nvar: int, dim: int, inter_dim: int) -> None:
        super().__init__()
        self.nvar = nvar
        self.norm = nn.BatchNorm1d(nvar * dim)
        self.conv1 = nn.Conv1d(nvar * dim, inter_dim, kernel_size=1)
        self.conv2 = nn.Conv1d(inter_dim, nvar, kernel_size=1)
        self.gelu = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, e, n = x.shape
        return self.conv2(self.gelu(self.conv1(self.norm(x.reshape(-1, self.nvar * e, n)))))


class NormWearCore(nn.Module):
    """The official ``NormWear`` module's parameters (encoder + optional MAE decoder), named as upstream."""

    def __init__(self, img_hw: tuple[int, int] = (387, 65), patch_hw: tuple[int, int] = (9, 5), in_chans: int = 3,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 fuse_freq: int = 2, decoder: bool = True, decoder_dim: int = 512, decoder_depth: int = 2,
                 decoder_heads: int = 8, target_len: int = 388, pretrain_nvar: int = 4, eps: float = 1e-5) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(patch_hw, in_chans, embed_dim)
        self.grid_hw = self.patch_embed.grid(img_hw)
        n_pos = 1 + self.grid_hw[0] * self.grid_hw[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_pos, embed_dim), requires_grad=False)
        self.encoder_blocks = nn.ModuleList([EncoderLayer(embed_dim, num_heads, mlp_ratio, i % fuse_freq == 0, eps)
                                             for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        if decoder:
            self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
            self.decoder_pos_embed = nn.Parameter(torch.zeros(1, n_pos, decoder_dim), requires_grad=False)
            self.decoder_blocks = nn.ModuleList([Block(decoder_dim, decoder_heads, mlp_ratio, eps=eps)
                                                 for _ in range(decoder_depth)])
            self.temporal_recon = nn.Linear(n_pos, target_len)
            self.spatial_recon = SpatialRecon(pretrain_nvar, decoder_dim, embed_dim // 2)
            self.decoder_norm = nn.LayerNorm(decoder_dim)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        self.pos_embed.copy_(torch.from_numpy(sincos_2d(self.pos_embed.shape[-1], self.grid_hw)).float()[None])
        nn.init.normal_(self.cls_token, std=0.02)
        if hasattr(self, "decoder_pos_embed"):
            table = sincos_2d(self.decoder_pos_embed.shape[-1], self.grid_hw)
            self.decoder_pos_embed.copy_(torch.from_numpy(table).float()[None])
            nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


class NormWear(Backbone):
    """NormWear encoder on raw multi-variable windows: scalogram → patches → 12 fused blocks.

    Args:
        spec: one channel per NormWear variable; window length fixes the CWT kernels and the patch grid.
        embed_dim, depth, num_heads, mlp_ratio, fuse_freq: encoder (768, 12, 12, 4, 2 for the release).
        decoder: keep the MAE decoder parameters so the released checkpoint loads strictly.
        decoder_dim, decoder_depth, decoder_heads: decoder shape (512, 2, 8).
        block_eps: LayerNorm eps inside blocks: 1e-5 = timm ``Block`` with ``nn.LayerNorm`` (the vendored copy
            BioX-Bridge ran the checkpoint with); the current official ``modules/layers.py`` uses 1e-6.

    Shapes: embed: (B, nvar, T) -> (B·nvar, 1 + h·w, D); to_btd: -> (B, nvar·(1 + h·w), D).
    """

    layout = "BTD"
    blocks_path = "backbone.encoder_blocks"

    def __init__(self, spec: SignalSpec, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, fuse_freq: int = 2, decoder: bool = True, decoder_dim: int = 512,
                 decoder_depth: int = 2, decoder_heads: int = 8, block_eps: float = 1e-5) -> None:
        super().__init__(spec)
        self.nvar = spec.n_channels
        self.scalogram = NormWearScalogram(spec.n_times)
        self.backbone = NormWearCore(embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                     fuse_freq=fuse_freq, decoder=decoder, decoder_dim=decoder_dim,
                                     decoder_depth=decoder_depth, decoder_heads=decoder_heads, eps=block_eps)
        self.grid_hw = self.backbone.patch_embed.grid((spec.n_times - 2, len(NORMWEAR_WIDTHS)))
        if min(self.grid_hw) < 1:
            raise ValueError(f"window of {spec.n_times} samples is too short for NormWear's (9, 5) patches")
        if self.grid_hw != self.backbone.grid_hw:
            log.info("NormWear: patch grid %s differs from pre-training %s; pos_embed is resized bicubically",
                     self.grid_hw, self.backbone.grid_hw)

    @property
    def n_tokens(self) -> int:
        """Tokens per variable (CLS + patches)."""
        return 1 + self.grid_hw[0] * self.grid_hw[1]

    def position_table(self) -> torch.Tensor:
        """``pos_embed`` on this window's grid (unchanged on the pre-training grid). Shapes: -> (1, N, D)."""
        pos = self.backbone.pos_embed
        if self.grid_hw == self.backbone.grid_hw:
            return pos
        (h0, w0), d = self.backbone.grid_hw, pos.shape[-1]
        grid = pos[:, 1:].reshape(1, h0, w0, d).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=self.grid_hw, mode="bicubic", align_corners=False)
        return torch.cat((pos[:, :1], grid.permute(0, 2, 3, 1).flatten(1, 2)), dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Raw window → scalogram patches + positions, CLS first. Shapes: (B, nvar, T) -> (B·nvar, N, D)."""
        if x.shape[1] != self.nvar:
            raise ValueError(f"NormWear was built for {self.nvar} variables, got input with {x.shape[1]}")
        spec = self.scalogram(x)  # (B, nvar, 3, L, F)
        b, nvar, c, length, n_scales = spec.shape
        pos = self.position_table()
        tokens = self.backbone.patch_embed(spec.reshape(b * nvar, c, length, n_scales)) + pos[:, 1:]
        cls = (self.backbone.cls_token + pos[:, :1]).expand(b * nvar, -1, -1)
        return torch.cat((cls, tokens), dim=1)

    def run_block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.block_list[i](h, self.nvar)

    def to_btd(self, h: torch.Tensor) -> torch.Tensor:
        bn, n, d = h.shape
        return h.reshape(bn // self.nvar, self.nvar * n, d)

    def from_btd(self, h: torch.Tensor) -> torch.Tensor:
        b, vn, d = h.shape
        return h.reshape(b * self.nvar, vn // self.nvar, d)

    def signal_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Official ``get_signal_embedding`` output: blocks, final ``norm``, per variable.

        Shapes: (B, nvar, T) -> (B, nvar, N, D).
        """
        h = self.backbone.norm(self.run_blocks(self.embed(x), 0, self.n_blocks))
        return h.reshape(-1, self.nvar, *h.shape[1:])


def convert_normwear_state(state: Mapping[str, torch.Tensor], has_decoder: bool = True) -> dict[str, torch.Tensor]:
    """Official keys → this adapter's: strip ``module.``, put flat ``NormWear`` keys under ``backbone.``.

    Accepts the released flat state dict and ``NormWearModel`` state dicts (already ``backbone.*``). Without a
    decoder in the model, the decoder tensors are dropped by name and logged.
    """
    state = strip_prefixes(state, ("module.",))
    if not any(k.startswith("backbone.") for k in state):
        state = {f"backbone.{k}": v for k, v in state.items()}
    if not has_decoder:
        dropped = sorted(k for k in state if k.removeprefix("backbone.").startswith(DECODER_KEYS))
        state = {k: v for k, v in state.items() if k not in set(dropped)}
        if dropped:
            log.info("NormWear: dropped %d MAE decoder tensors (model built with decoder=False)", len(dropped))
    return state


def load_normwear_weights(backbone: NormWear, path: str | Path, trust_pickle: bool = False) -> None:
    """Load the released NormWear checkpoint strictly into ``backbone`` (CheckpointMismatch names bad keys)."""
    state = read_state_dict(path, trust_pickle=trust_pickle)
    has_decoder = hasattr(backbone.backbone, "decoder_embed")
    load_strict(backbone, convert_normwear_state(state, has_decoder), what=f"NormWear checkpoint {Path(path).name}")


@register_backbone("normwear", modality="wearable", description="NormWear ViT-B on Ricker-CWT scalograms of each "
                   "variable, cross-variable CLS fusion (≈136 M incl. MAE decoder)", licence="Apache-2.0",
                   weights="NormWear GitHub release v1.0.0-alpha: normwear_last_checkpoint-15470-correct.pth",
                   tiny_kwargs={"window_s": 1.0, "fs_hz": 65.0, "embed_dim": 32, "depth": 2, "num_heads": 2,
                                "decoder_dim": 16, "decoder_depth": 1},
                   load_weights=load_normwear_weights)
def normwear(spec: SignalSpec | None = None, n_channels: int = 3, fs_hz: float = 130.0, window_s: float = 3.0,
             **kwargs: object) -> NormWear:
    """NormWear on ``spec`` (default: BioX-Bridge's FOG EMG, 3 variables × 3 s at 130 Hz)."""
    return NormWear(spec or normwear_spec(n_channels, fs_hz, window_s, stride_s=window_s / 10), **kwargs)
