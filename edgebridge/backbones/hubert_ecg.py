"""HuBERT-ECG (Coppola et al. 2024): a transformers ``HubertModel`` pretrained on 12-lead ECG, in plain PyTorch.

``HuBERTECG`` subclasses ``transformers.HubertModel`` and adds the pretraining heads ``final_proj`` and
``label_embedding`` (ModuleLists, one per k-means ensemble member). The modules here carry exactly the HF names
(``feature_extractor.conv_layers.<i>.conv``, ``feature_projection.{layer_norm,projection}``, ``masked_spec_embed``,
``encoder.pos_conv_embed.conv`` with weight norm, ``encoder.layer_norm``, ``encoder.layers.<i>.attention.{q,k,v,
out}_proj``, ``.layer_norm``, ``.feed_forward.{intermediate_dense,output_dense}``, ``.final_layer_norm``), for the
``feat_extract_norm="group"``, ``do_stable_layer_norm=False`` (post-LN) configuration HuBERT-ECG uses.

Official weights: HF ``Edoardo-BS/hubert-ecg-{small,base,large}`` (safetensors) and the ``.pt`` files of
``Edoardo-BS/HuBERT-ECG-SSL-Pretrained`` that BioX-Bridge uses, which nest ``model_state_dict`` and pickle a
``HuBERTECGConfig`` object (so they need ``trust_pickle``). Weights are **CC BY-NC 4.0: non-commercial use only**.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgebridge.backbones.base import Backbone
from edgebridge.backbones.convert import load_official
from edgebridge.backbones.layers import SeparateQKVAttention
from edgebridge.backbones.registry import register_backbone
from edgebridge.spec import SignalSpec

# (hidden, layers, heads, ffn, classifier_proj_size) from HuBERT-ECG's scripts/pretrain.py
SIZES = {"small": (512, 8, 8, 2048, 256), "base": (768, 12, 12, 3072, 256), "large": (960, 16, 12, 3840, 512)}
CONV_KERNEL = (10, 3, 3, 2, 2)  # downsampling_factor=5 configuration: ×64 overall, 93 tokens for 6 000 samples
CONV_STRIDE = (4, 2, 2, 2, 2)


class ConvLayer(nn.Module):
    """Feature-encoder conv + GELU; the first layer also has ``layer_norm`` = GroupNorm(C, C) (HF "group" mode).

    Shapes: (B, C_in, L) -> (B, C_out, (L - k) // s + 1).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, group_norm: bool, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=bias)
        self.layer_norm = nn.GroupNorm(c_out, c_out, affine=True) if group_norm else None
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.activation(x)


class FeatureEncoder(nn.Module):
    """Strided conv stack on the raw flattened signal. Shapes: (B, L) -> (B, conv_dim, N)."""

    def __init__(self, conv_dim: Sequence[int], kernels: Sequence[int], strides: Sequence[int]) -> None:
        super().__init__()
        dims = (1, *conv_dim)
        self.conv_layers = nn.ModuleList(ConvLayer(dims[i], dims[i + 1], k, s, group_norm=i == 0)
                                         for i, (k, s) in enumerate(zip(kernels, strides, strict=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    """LayerNorm + Linear from conv features to the transformer width. Shapes: (B, N, C) -> (B, N, D)."""

    def __init__(self, conv_dim: int, hidden: int, eps: float = 1e-5, dropout: float = 0.1) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(conv_dim, eps=eps)
        self.projection = nn.Linear(conv_dim, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.projection(self.layer_norm(x)))


class PositionalConvEmbedding(nn.Module):
    """Grouped conv over time with weight norm (dim=2), trimmed by one step for even kernels, then GELU.

    Shapes: (B, N, D) -> (B, N, D) (the positional term that the encoder adds to its input).
    """

    def __init__(self, hidden: int, kernel: int = 128, groups: int = 16) -> None:
        super().__init__()
        conv = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=groups)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.num_pad_remove = 1 if kernel % 2 == 0 else 0
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.transpose(1, 2))
        if self.num_pad_remove:
            x = x[:, :, : -self.num_pad_remove]
        return self.activation(x).transpose(1, 2)



class FeedForward(nn.Module):
    """Linear-GELU-Linear. Shapes: (B, N, D) -> (B, N, D)."""

    def __init__(self, hidden: int, ffn: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.intermediate_dropout = nn.Dropout(dropout)
        self.intermediate_dense = nn.Linear(hidden, ffn)
        self.intermediate_act_fn = nn.GELU()
        self.output_dense = nn.Linear(ffn, hidden)
        self.output_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.intermediate_dropout(self.intermediate_act_fn(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class EncoderLayer(nn.Module):
    """Post-LN transformer layer (HF ``HubertEncoderLayer``). Returns a 1-tuple ``(hidden_states,)`` as HF does.

    Shapes: (B, N, D) -> ((B, N, D),).
    """

    def __init__(self, hidden: int, heads: int, ffn: int, eps: float = 1e-5, dropout: float = 0.1) -> None:
        super().__init__()
        self.attention = SeparateQKVAttention(hidden, heads, dropout)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(hidden, eps=eps)
        self.feed_forward = FeedForward(hidden, ffn, dropout)
        self.final_layer_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor]:
        if attention_mask is not None:
            raise NotImplementedError("padding masks are not supported: windows have a fixed length")
        h = self.layer_norm(hidden_states + self.dropout(self.attention(hidden_states)))
        return (self.final_layer_norm(h + self.feed_forward(h)),)


class Encoder(nn.Module):
    """``pos_conv_embed`` + ``layer_norm`` + dropout, then ``layers`` (HF ``HubertEncoder``).

    Shapes: (B, N, D) -> (B, N, D).
    """

    def __init__(self, hidden: int, n_layers: int, heads: int, ffn: int, eps: float = 1e-5,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.pos_conv_embed = PositionalConvEmbedding(hidden)
        self.layer_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ffn, eps, dropout) for _ in range(n_layers))

    def embed_positions(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before layer 0: add conv positions, LayerNorm, dropout."""
        return self.dropout(self.layer_norm(x + self.pos_conv_embed(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed_positions(x)
        for layer in self.layers:  # LayerDrop is a training-time device; these models are only run frozen
            x = layer(x)[0]
        return x


class HuBERTECG(Backbone):
    """HuBERT-ECG as a Backbone (layout BTD, blocks ``encoder.layers``).

    ``embed`` flattens the (B, C, T) window lead-major to (B, C·T) exactly as upstream feeds it, then runs the conv
    feature encoder, the projection and the encoder's positional conv + LayerNorm.

    Shapes: (B, C, T) -> embed (B, N, hidden) with N = conv-output length of C·T samples (93 for 6 000).
    """

    layout = "BTD"
    blocks_path = "encoder.layers"

    def __init__(self, spec: SignalSpec, hidden: int = 512, n_layers: int = 8, heads: int = 8, ffn: int = 2048,
                 classifier_proj_size: int = 256, vocab_sizes: Sequence[int] = (100,),
                 conv_dim: Sequence[int] | None = None, conv_kernel: Sequence[int] = CONV_KERNEL,
                 conv_stride: Sequence[int] = CONV_STRIDE, masked_spec_embed: bool = True) -> None:
        super().__init__(spec)
        conv_dim = tuple(conv_dim or (512,) * len(conv_kernel))
        if not len(conv_dim) == len(conv_kernel) == len(conv_stride):
            raise ValueError("conv_dim, conv_kernel and conv_stride must have the same length")
        self.feature_extractor = FeatureEncoder(conv_dim, conv_kernel, conv_stride)
        self.feature_projection = FeatureProjection(conv_dim[-1], hidden)
        # Present in HF checkpoints whenever mask_time_prob > 0 (the pretraining default); unused when frozen.
        self.masked_spec_embed = nn.Parameter(torch.rand(hidden)) if masked_spec_embed else None
        self.encoder = Encoder(hidden, n_layers, heads, ffn)
        # Pretraining heads (k-means code prediction): unused by the bridge, kept for strict loading.
        self.final_proj = nn.ModuleList(nn.Linear(hidden, classifier_proj_size) for _ in vocab_sizes)
        self.label_embedding = nn.ModuleList(nn.Embedding(v, classifier_proj_size) for v in vocab_sizes)

    def flatten_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C·T), lead after lead (upstream's ``data.reshape(bs, -1)``)."""
        return x.reshape(x.shape[0], -1)

    def features(self, input_values: torch.Tensor) -> torch.Tensor:
        """Conv encoder + projection on the flat signal. Shapes: (B, L) -> (B, N, hidden)."""
        return self.feature_projection(self.feature_extractor(input_values).transpose(1, 2))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.embed_positions(self.features(self.flatten_input(x)))

    def run_block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.block_list[i](h)[0]

    def forward_official(self, input_values: torch.Tensor) -> torch.Tensor:
        """``HubertModel.forward(...).last_hidden_state`` in eval mode (no masking, no padding mask).

        Shapes: (B, L) flat signal -> (B, N, hidden).
        """
        return self.encoder(self.features(input_values))

    def logits(self, last_hidden_state: torch.Tensor) -> list[torch.Tensor]:
        """Pretraining logits per ensemble member (cosine to the code embeddings / 0.1). Shapes: -> [(B, N, V)]."""
        return [F.cosine_similarity(proj(last_hidden_state).unsqueeze(2), emb.weight[None, None], dim=-1) / 0.1
                for proj, emb in zip(self.final_proj, self.label_embedding, strict=True)]


def hubert_ecg_spec(window_s: float = 60.0, stride_s: float = 5.0, n_leads: int = 1) -> SignalSpec:
    """HuBERT-ECG input: ECG at 100 Hz, 0.05–47 Hz band-pass, z-scored per lead and window.

    Pretraining used 12 leads × 5 s (6 000 samples flattened); the paper feeds 1 lead × 60 s (also 6 000).
    """
    channels = ("ecg",) if n_leads == 1 else tuple(f"ecg{i}" for i in range(n_leads))
    return SignalSpec(modality="ecg", fs_hz=100.0, channels=channels, window_s=window_s, stride_s=stride_s,
                      bandpass_hz=(0.05, 47.0), norm="zscore")


def load_hubert_ecg_weights(backbone: HuBERTECG, path: str | Path, trust_pickle: bool = False) -> None:
    """Load an official HuBERT-ECG checkpoint strictly.

    Accepts HF ``model.safetensors`` / ``pytorch_model.bin`` and the SSL ``.pt`` files (``model_state_dict`` plus a
    pickled config: pass ``trust_pickle=True``; transformers is not needed). Both weight-norm key styles load.
    """
    load_official(backbone, path, trust_pickle=trust_pickle, prefixes=("module.", "hubert_ecg.", "hubert."),
                  hint="HuBERT-ECG .pt checkpoints pickle a HuBERTECGConfig object next to model_state_dict "
                       "(use the HF safetensors file to avoid this).")


def _build(size: str, spec: SignalSpec | None, window_s: float, stride_s: float, n_leads: int,
           vocab_sizes: Sequence[int], **overrides: int) -> HuBERTECG:
    hidden, layers, heads, ffn, proj = SIZES[size]
    cfg = {"hidden": hidden, "n_layers": layers, "heads": heads, "ffn": ffn, "classifier_proj_size": proj}
    cfg.update(overrides)
    return HuBERTECG(spec or hubert_ecg_spec(window_s, stride_s, n_leads), vocab_sizes=tuple(vocab_sizes), **cfg)


_LICENCE = "CC BY-NC 4.0 (weights: NON-COMMERCIAL use only); code CC BY-NC 4.0"
_TINY = {"window_s": 4.0, "hidden": 32, "n_layers": 2, "heads": 4, "ffn": 64, "classifier_proj_size": 8,
         "vocab_sizes": (5,), "conv_dim": (16, 16, 16, 16, 16)}


_DOC = ("``vocab_sizes`` must match the checkpoint's k-means ensemble (a CheckpointMismatch names label_embedding "
        "otherwise); ``overrides`` change any HuBERTECG argument (the tests use tiny ones).")


@register_backbone("hubert_ecg_small", modality="ecg", description="HuBERT-ECG small (30.4 M params, 512-d, "
                   "8 layers), 100 Hz ECG flattened", licence=_LICENCE,
                   weights="https://huggingface.co/Edoardo-BS/hubert-ecg-small", tiny_kwargs=dict(_TINY),
                   load_weights=load_hubert_ecg_weights)
def hubert_ecg_small(spec: SignalSpec | None = None, window_s: float = 60.0, stride_s: float = 5.0,
                     n_leads: int = 1, vocab_sizes: Sequence[int] = (100,), **overrides: int) -> HuBERTECG:
    return _build("small", spec, window_s, stride_s, n_leads, vocab_sizes, **overrides)


@register_backbone("hubert_ecg_base", modality="ecg", description="HuBERT-ECG base (93 M params, 768-d, "
                   "12 layers), 100 Hz ECG flattened", licence=_LICENCE,
                   weights="https://huggingface.co/Edoardo-BS/hubert-ecg-base", tiny_kwargs=dict(_TINY),
                   load_weights=load_hubert_ecg_weights)
def hubert_ecg_base(spec: SignalSpec | None = None, window_s: float = 60.0, stride_s: float = 5.0,
                    n_leads: int = 1, vocab_sizes: Sequence[int] = (100,), **overrides: int) -> HuBERTECG:
    return _build("base", spec, window_s, stride_s, n_leads, vocab_sizes, **overrides)


@register_backbone("hubert_ecg_large", modality="ecg", description="HuBERT-ECG large (188 M params, 960-d, "
                   "16 layers), 100 Hz ECG flattened", licence=_LICENCE,
                   weights="https://huggingface.co/Edoardo-BS/hubert-ecg-large", tiny_kwargs=dict(_TINY),
                   load_weights=load_hubert_ecg_weights)
def hubert_ecg_large(spec: SignalSpec | None = None, window_s: float = 60.0, stride_s: float = 5.0,
                     n_leads: int = 1, vocab_sizes: Sequence[int] = (100,), **overrides: int) -> HuBERTECG:
    return _build("large", spec, window_s, stride_s, n_leads, vocab_sizes, **overrides)


for _factory in (hubert_ecg_small, hubert_ecg_base, hubert_ecg_large):
    _factory.__doc__ = f"HuBERT-ECG {_factory.__name__.rsplit('_', 1)[1]}. " + _DOC
