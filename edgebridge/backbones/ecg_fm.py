"""ECG-FM (McKeen et al. 2024): fairseq-signals wav2vec 2.0 (W2V+CMSC+RLM) on 12-lead ECG, in plain PyTorch.

Module and parameter names follow fairseq-signals' ``Wav2Vec2CMSCModel`` (``ConvTransformerModel`` +
``Wav2Vec2Model``): ``feature_extractor.conv_layers.<i>.{0: conv, 2: GroupNorm (layer 0)}``, ``layer_norm``,
``post_extract_proj``, ``mask_emb``, ``encoder.pos_conv.0`` (weight-normed conv, then SamePad and GELU),
``encoder.layers.<i>.{self_attn.{q,k,v,out}_proj, self_attn_layer_norm, fc1, fc2, final_layer_norm}``,
``encoder.layer_norm``, plus the pretraining modules ``quantizer.{vars,weight_proj}``, ``project_q`` and
``final_proj`` that the released pretrained checkpoint carries. Configuration = ``mimic_iv_ecg_physionet_pretrained``
(conv ``[(256, 2, 2)] * 4``, 768-d, 12 layers, 12 heads, FFN 3072, post-LN, final_dim 256, 2×320 codewords).

fairseq layers run time-major (T, B, C); the layers here are batch-first (B, T, C) — the same arithmetic on the
same parameters — so hidden states between blocks are BTD like every other transformer adapter.

Weights: HF ``wanglab/ecg-fm`` (``mimic_iv_ecg_physionet_pretrained.pt``), a fairseq checkpoint (``model`` plus a
pickled omegaconf ``cfg``: needs ``trust_pickle``; fairseq is not needed). Code MIT; the HF model card of
``wanglab/ecg-fm-preprint`` states MIT.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgebridge.backbones.base import Backbone
from edgebridge.backbones.convert import load_official
from edgebridge.backbones.layers import SeparateQKVAttention
from edgebridge.backbones.registry import register_backbone
from edgebridge.spec import SignalSpec

LEAD_EXPANSIONS = ("zero_pad", "repeat")


class FeatureExtraction(nn.Module):
    """``ConvFeatureExtraction`` in "default" mode: each layer = Sequential(conv, dropout, [GroupNorm], GELU).

    Shapes: (B, in_d, T) -> (B, dim, T') with T' from the unpadded strided convs.
    """

    def __init__(self, conv_layers: list[tuple[int, int, int]], in_d: int) -> None:
        super().__init__()
        self.conv_layers = nn.ModuleList()
        for i, (dim, k, stride) in enumerate(conv_layers):
            mods: list[nn.Module] = [nn.Conv1d(in_d, dim, k, stride=stride, bias=False), nn.Dropout(0.0)]
            if i == 0:
                mods.append(nn.GroupNorm(dim, dim, affine=True))
            mods.append(nn.GELU())
            self.conv_layers.append(nn.Sequential(*mods))
            in_d = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.conv_layers:
            x = conv(x)
        return x


class SamePad(nn.Module):
    """Drop the extra last step that ``padding = k // 2`` adds for an even kernel. Shapes: (B, C, T+1) -> (B, C, T)."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : -self.remove] if self.remove else x



class TransformerEncoderLayer(nn.Module):
    """Post-LN wav2vec 2.0 layer; returns ``(x, (None, ffn_output))`` as fairseq does (attention weights not kept).

    Shapes: (B, T, D) -> ((B, T, D), (None, (B, T, D))).
    """

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float = 0.1, attention_dropout: float = 0.1,
                 activation_dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = SeparateQKVAttention(dim, heads, attention_dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(activation_dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn)
        self.fc2 = nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[None, torch.Tensor]]:
        x = self.self_attn_layer_norm(x + self.dropout1(self.self_attn(x)))
        layer_result = self.fc2(self.dropout2(F.gelu(self.fc1(x))))
        return self.final_layer_norm(x + self.dropout3(layer_result)), (None, layer_result)


class TransformerEncoder(nn.Module):
    """Conv positional embedding + LayerNorm (post-LN order) + layers. Shapes: (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int, n_layers: int, heads: int, ffn: int, conv_pos: int = 128,
                 conv_pos_groups: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = dropout
        conv = nn.Conv1d(dim, dim, conv_pos, padding=conv_pos // 2, groups=conv_pos_groups)
        conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.pos_conv = nn.Sequential(conv, SamePad(conv_pos), nn.GELU())
        self.layers = nn.ModuleList(TransformerEncoderLayer(dim, heads, ffn, dropout) for _ in range(n_layers))
        self.layer_norm = nn.LayerNorm(dim)

    def embed_positions(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before layer 0 (``layer_norm_first=False``): add conv positions, LayerNorm, dropout."""
        x = self.layer_norm(x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2))
        return F.dropout(x, p=self.dropout, training=self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed_positions(x)
        for layer in self.layers:
            x, _ = layer(x)
        return x


class GumbelVectorQuantizer(nn.Module):
    """Parameters of fairseq's ``GumbelVectorQuantizer`` (pretraining target quantiser; never run here)."""

    def __init__(self, dim: int, num_vars: int, groups: int, vq_dim: int) -> None:
        super().__init__()
        self.vars = nn.Parameter(torch.empty(1, groups * num_vars, vq_dim // groups).uniform_())
        self.weight_proj = nn.Linear(dim, groups * num_vars)


class ECGFM(Backbone):
    """ECG-FM as a Backbone (layout BTD, blocks ``encoder.layers``).

    Shapes: (B, C, T) -> embed (B, T / 16, 768) (C = 12, or 1 expanded to 12 by zero padding or repetition).
    """

    layout = "BTD"
    blocks_path = "encoder.layers"

    def __init__(self, spec: SignalSpec, in_d: int = 12, conv_dim: int = 256, n_conv: int = 4, conv_kernel: int = 2,
                 dim: int = 768, n_layers: int = 12, heads: int = 12, ffn: int = 3072, final_dim: int = 256,
                 latent_vars: int = 320, latent_groups: int = 2, conv_pos: int = 128, conv_pos_groups: int = 16,
                 lead_expansion: str = "zero_pad") -> None:
        super().__init__(spec)
        if spec.n_channels not in (1, in_d):
            raise ValueError(f"ECG-FM reads {in_d} leads (or 1 lead expanded); the spec has {spec.n_channels}")
        if lead_expansion not in LEAD_EXPANSIONS:
            raise ValueError(f"unknown lead_expansion '{lead_expansion}'; known: {list(LEAD_EXPANSIONS)}")
        self.in_d = in_d
        self.lead_expansion = lead_expansion
        self.feature_extractor = FeatureExtraction([(conv_dim, conv_kernel, conv_kernel)] * n_conv, in_d)
        self.layer_norm = nn.LayerNorm(conv_dim)
        self.post_extract_proj = nn.Linear(conv_dim, dim) if conv_dim != dim else None
        self.dropout_input = nn.Dropout(0.1)
        self.mask_emb = nn.Parameter(torch.empty(dim).uniform_())
        self.encoder = TransformerEncoder(dim, n_layers, heads, ffn, conv_pos, conv_pos_groups)
        # Pretraining modules present in the released pretrained checkpoint; unused by the bridge.
        self.quantizer = GumbelVectorQuantizer(conv_dim, latent_vars, latent_groups, final_dim)
        self.project_q = nn.Linear(final_dim, final_dim)
        self.final_proj = nn.Linear(dim, final_dim)

    def expand_leads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) -> (B, in_d, T): lead in channel 0 and zeros ("zero_pad"), or copies ("repeat")."""
        if x.shape[1] == self.in_d:
            return x
        if self.lead_expansion == "repeat":
            return x.repeat(1, self.in_d, 1)
        return F.pad(x, (0, 0, 0, self.in_d - x.shape[1]))

    def features(self, source: torch.Tensor) -> torch.Tensor:
        """Conv features, LayerNorm, projection. Shapes: (B, in_d, T) -> (B, T', dim)."""
        x = self.layer_norm(self.feature_extractor(source).transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.dropout_input(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.embed_positions(self.features(self.expand_leads(x)))

    def run_block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.block_list[i](h)[0]

    def forward_official(self, source: torch.Tensor) -> torch.Tensor:
        """``extract_features(source, padding_mask=None, mask=False)["x"]``. Shapes: (B, in_d, T) -> (B, T', dim)."""
        return self.encoder(self.features(source))


def ecg_fm_spec(window_s: float = 60.0, stride_s: float = 5.0, n_leads: int = 1) -> SignalSpec:
    """ECG-FM input: ECG at 500 Hz, 0.05–47 Hz band-pass, z-scored per lead and window; 12 leads or 1 lead.

    ECG-FM was pretrained on 5-s 12-lead crops; the paper feeds 1 lead × 60 s (1 875 tokens).
    """
    channels = ("ecg",) if n_leads == 1 else tuple(f"ecg{i}" for i in range(n_leads))
    return SignalSpec(modality="ecg", fs_hz=500.0, channels=channels, window_s=window_s, stride_s=stride_s,
                      bandpass_hz=(0.05, 47.0), norm="zscore")


def load_ecg_fm_weights(backbone: ECGFM, path: str | Path, trust_pickle: bool = False) -> None:
    """Load ``mimic_iv_ecg_physionet_pretrained.pt`` strictly (fairseq checkpoint: pass ``trust_pickle=True``)."""
    load_official(backbone, path, trust_pickle=trust_pickle, prefixes=("module.",),
                  hint="ECG-FM checkpoints are fairseq files that pickle an omegaconf config next to 'model'.")


@register_backbone(
    "ecg_fm", modality="ecg",
    description="ECG-FM wav2vec 2.0 ECG foundation model (90.9 M params, 768-d, 12 layers), 500 Hz, 12 or 1 lead",
    licence="MIT (code; HF model card of wanglab/ecg-fm-preprint: MIT)",
    weights="https://huggingface.co/wanglab/ecg-fm (mimic_iv_ecg_physionet_pretrained.pt)",
    tiny_kwargs={"window_s": 4.0, "conv_dim": 16, "dim": 32, "n_layers": 2, "heads": 4, "ffn": 64,
                 "final_dim": 8, "latent_vars": 4, "conv_pos": 16, "conv_pos_groups": 4},
    load_weights=load_ecg_fm_weights)
def ecg_fm(spec: SignalSpec | None = None, window_s: float = 60.0, stride_s: float = 5.0, n_leads: int = 1,
           lead_expansion: str = "zero_pad", **overrides: int) -> ECGFM:
    """ECG-FM as released; ``n_leads`` 1 (expanded to 12 by ``lead_expansion``) or 12; ``overrides`` change any
    ``ECGFM`` size argument (the tests use tiny ones)."""
    return ECGFM(spec or ecg_fm_spec(window_s, stride_s, n_leads), lead_expansion=lead_expansion, **overrides)
