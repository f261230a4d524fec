"""LaBraM-Base (Jiang et al., ICLR 2024) as an edgebridge backbone, in plain PyTorch.

Module and parameter names follow the official ``NeuralTransformer`` (github.com/935963004/LaBraM,
``modeling_finetune.py`` / ``modeling_pretrain.py``), so ``labram-base.pth`` loads with strict key checking:
``patch_embed`` (TemporalConv: conv1/norm1 … conv3/norm3, GroupNorm(4)), ``cls_token``, ``pos_embed`` (128 channel
slots + CLS), ``time_embed`` (16 one-second slots), ``blocks.N`` (qkv without bias, optional ``q_bias``/``v_bias``,
``q_norm``/``k_norm`` LayerNorm over the head dim, ``gamma_1``/``gamma_2`` layer scale), ``norm``.

What differs from the upstream code on purpose (see shared/reference/biox_upstream.md §5):

* the pretrained ``time_embed`` (16 s) is kept. For windows of A ≤ 16 s the first A rows are used — exactly what
  LaBraM pre-training did. For A > 16 s (ISRUC: 30 s) the 16 rows are linearly interpolated onto A positions
  (``align_corners=True``: first and last second keep their pretrained vectors). The BioX-Bridge copy instead
  re-declared 30 random rows and silently dropped the pretrained ones.
* the pretrained channel embedding ``pos_embed`` is kept (upstream BioX ran with ``use_abs_pos_emb=False``). The
  spec's channel names pick its rows through LaBraM's ``standard_1020`` list.
* ``labram-base.pth``'s official factory (``labram_base_patch200_1600_8k_vocab``) hard-codes ``qkv_bias=False`` and the
  README fine-tunes with ``--disable_qkv_bias``, so blocks have no ``q_bias``/``v_bias`` by default; pass
  ``qkv_bias=True`` for checkpoints that carry them (a mismatch raises and names the keys).
* pre-training-only tensors (``mask_token``, ``lm_head.*`` of the student, the MEM wrapper's ``lm_head.*`` and
  ``projection_head.*``) are dropped by name and logged; any other stray key raises CheckpointMismatch.

Input: ``(B, C, T)`` at 200 Hz in units of 0.1 mV (SignalSpec norm ``"scale"``, scale 0.01 on µV), reshaped by
``embed`` into ``(B, C, A, 200)`` one-second patches. Hidden state ``(B, 1 + C·A, 200)``, channel-major tokens.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgebridge.backbones.base import Backbone
from edgebridge.backbones.layers import Mlp
from edgebridge.backbones.registry import register_backbone
from edgebridge.backbones.weights import CheckpointMismatch, load_strict, read_state_dict, strip_prefixes
from edgebridge.spec import SignalSpec

log = logging.getLogger(__name__)

#: LaBraM's channel order (``standard_1020`` in the official utils.py); channel i uses ``pos_embed`` row i + 1.
STANDARD_1020: tuple[str, ...] = (
    "FP1", "FPZ", "FP2",
    "AF9", "AF7", "AF5", "AF3", "AF1", "AFZ", "AF2", "AF4", "AF6", "AF8", "AF10",
    "F9", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "F10",
    "FT9", "FT7", "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "FT10",
    "T9", "T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8", "T10",
    "TP9", "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8", "TP10",
    "P9", "P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8", "P10",
    "PO9", "PO7", "PO5", "PO3", "PO1", "POZ", "PO2", "PO4", "PO6", "PO8", "PO10",
    "O1", "OZ", "O2", "O9", "CB1", "CB2",
    "IZ", "O10", "T3", "T5", "T4", "T6", "M1", "M2", "A1", "A2",
    "CFC1", "CFC2", "CFC3", "CFC4", "CFC5", "CFC6", "CFC7", "CFC8",
    "CCP1", "CCP2", "CCP3", "CCP4", "CCP5", "CCP6", "CCP7", "CCP8",
    "T1", "T2", "FTT9H", "TTP7H", "TPP9H", "FTT10H", "TPP8H", "TPP10H",
)

#: The six EEG derivations BioX-Bridge uses on ISRUC and FOG (F3, C3, O1, F4, C4, O2).
PAPER_EEG_CHANNELS: tuple[str, ...] = ("F3", "C3", "O1", "F4", "C4", "O2")

#: Keys of the pre-training checkpoint that the encoder does not use (dropped by name, logged).
PRETRAIN_ONLY_KEYS = ("mask_token", "lm_head.weight", "lm_head.bias")
MEM_HEAD_PREFIXES = ("lm_head.", "projection_head.")


def channel_index(name: str) -> int:
    """Row of ``pos_embed`` for a channel name (``"F3"``, ``"EEG F3-REF"``, ``"F3_A2"`` → F3's row).

    The reference electrode after ``-`` or ``_`` and an ``EEG`` prefix are ignored, as LaBraM's own scripts do.
    """
    base = re.split(r"[-_]", name.strip().upper().removeprefix("EEG").strip())[0]
    if base not in STANDARD_1020:
        raise KeyError(f"channel '{name}' (read as '{base}') is not in LaBraM's 10-20 list; pass channel_positions="
                       f"[...] naming the nearest standard electrode for each channel")
    return STANDARD_1020.index(base) + 1


def labram_spec(channels: Sequence[str] = PAPER_EEG_CHANNELS, window_s: float = 30.0,
                stride_s: float | None = None) -> SignalSpec:
    """LaBraM's input contract: raw µV at 200 Hz, scaled by 0.01 to 0.1 mV, whole seconds."""
    return SignalSpec(modality="eeg", fs_hz=200.0, channels=tuple(channels), window_s=window_s,
                      stride_s=stride_s or window_s, norm="scale", scale=0.01)


class TemporalConv(nn.Module):
    """Per-patch temporal CNN. Shapes: (B, C, A, P) -> (B, C·A, ceil(P/8)·out_chans)."""

    def __init__(self, in_chans: int = 1, out_chans: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans, kernel_size=(1, 15), stride=(1, 8), padding=(0, 7))
        self.gelu1 = nn.GELU()
        self.norm1 = nn.GroupNorm(4, out_chans)
        self.conv2 = nn.Conv2d(out_chans, out_chans, kernel_size=(1, 3), padding=(0, 1))
        self.gelu2 = nn.GELU()
        self.norm2 = nn.GroupNorm(4, out_chans)
        self.conv3 = nn.Conv2d(out_chans, out_chans, kernel_size=(1, 3), padding=(0, 1))
        self.norm3 = nn.GroupNorm(4, out_chans)
        self.gelu3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, a, p = x.shape
        x = x.reshape(b, 1, c * a, p)
        x = self.gelu1(self.norm1(self.conv1(x)))
        x = self.gelu2(self.norm2(self.conv2(x)))
        x = self.gelu3(self.norm3(self.conv3(x)))  # (B, out_chans, C·A, P')
        return x.permute(0, 2, 3, 1).reshape(b, c * a, -1)  # 'B C NA T -> B NA (T C)'


class Attention(nn.Module):
    """Multi-head attention with LayerNorm on q and k. Shapes: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-6)
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-6)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q, k = self.q_norm(q), self.k_norm(k)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))



class Block(nn.Module):
    """Pre-norm transformer block with layer scale (gamma_1/gamma_2). Shapes: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 init_values: float = 0.1) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.gamma_1 = nn.Parameter(init_values * torch.ones(dim)) if init_values > 0 else None
        self.gamma_2 = nn.Parameter(init_values * torch.ones(dim)) if init_values > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gamma_1 is None:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = x + self.gamma_1 * self.attn(self.norm1(x))
        return x + self.gamma_2 * self.mlp(self.norm2(x))


def time_embed_weights(n_seconds: int, n_slots: int) -> torch.Tensor:
    """Matrix mapping the pretrained time slots onto a window's seconds.

    A ≤ n_slots: the first A slots (LaBraM's own slicing). A > n_slots: linear interpolation over the slots with
    ``align_corners=True`` (documented extrapolation; the checkpoint never saw more than 16 s).

    Shapes: -> (A, n_slots); time rows = weights @ time_embed[0].
    """
    if n_seconds <= n_slots:
        return torch.eye(n_slots)[:n_seconds]
    eye = torch.eye(n_slots).unsqueeze(0)  # (1, n_slots, n_slots): interpolate each one-hot row along slots
    return F.interpolate(eye, size=n_seconds, mode="linear", align_corners=True)[0].T.contiguous()


class LaBraM(Backbone):
    """LaBraM NeuralTransformer split into ``embed`` → ``blocks`` (see module docstring).

    Args:
        spec: 200 Hz EEG, whole seconds; channel names pick ``pos_embed`` rows.
        embed_dim, depth, num_heads, mlp_ratio, out_chans: architecture (Base: 200, 12, 10, 4, 8).
        qkv_bias: blocks carry ``q_bias``/``v_bias`` (labram-base.pth does not).
        init_values: layer-scale init; 0 removes gamma_1/gamma_2.
        n_time_slots: rows of ``time_embed`` (16 in the checkpoint).
        n_channel_slots: channel rows of ``pos_embed`` besides CLS (128).
        channel_positions: standard 10-20 names to use instead of the spec's channel names.
        n_classes: 0 = pre-trained encoder (final ``norm``); >0 = fine-tuned format (``fc_norm`` + ``head``).

    Shapes: embed: (B, C, T) -> (B, 1 + C·T/200, embed_dim).
    """

    layout = "BTD"
    blocks_path = "blocks"
    patch_size = 200

    def __init__(self, spec: SignalSpec, embed_dim: int = 200, depth: int = 12, num_heads: int = 10,
                 mlp_ratio: float = 4.0, out_chans: int = 8, qkv_bias: bool = False, init_values: float = 0.1,
                 n_time_slots: int = 16, n_channel_slots: int = 128,
                 channel_positions: Sequence[str] | None = None, n_classes: int = 0) -> None:
        super().__init__(spec)
        if spec.fs_hz != self.patch_size:
            raise ValueError(f"LaBraM reads 1-s patches of 200 samples: spec.fs_hz must be 200, got {spec.fs_hz}")
        if spec.n_times % self.patch_size:
            raise ValueError(f"LaBraM needs whole seconds: window of {spec.window_s} s is not")
        patch_dim = out_chans * ((self.patch_size - 1) // 8 + 1)
        if patch_dim != embed_dim:
            raise ValueError(f"embed_dim must equal out_chans·25 = {patch_dim} (TemporalConv output), got {embed_dim}")
        names = tuple(channel_positions) if channel_positions is not None else spec.channels
        if len(names) != spec.n_channels:
            raise ValueError(f"channel_positions names {len(names)} channels, the spec has {spec.n_channels}")
        rows = [channel_index(n) for n in names]
        if max(rows) > n_channel_slots:
            raise ValueError(f"channel rows {rows} exceed the {n_channel_slots} pos_embed slots")
        self.n_seconds = spec.n_times // self.patch_size
        self.patch_embed = TemporalConv(out_chans=out_chans)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_channel_slots + 1, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, n_time_slots, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias, init_values)
                                     for _ in range(depth)])
        if n_classes > 0:
            self.norm = nn.Identity()
            self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)
            self.head = nn.Linear(embed_dim, n_classes)
        else:
            self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.register_buffer("input_chans", torch.tensor([0, *rows]), persistent=False)
        self.register_buffer("time_weights", time_embed_weights(self.n_seconds, n_time_slots), persistent=False)
        if self.n_seconds > n_time_slots:
            log.info("LaBraM: %d-s window > %d pretrained time slots; time_embed is linearly interpolated",
                     self.n_seconds, n_time_slots)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        # Upstream uses timm's trunc_normal_(std=.02) with cut-offs at ±2 (i.e. ±100σ): the same as normal_ in
        # practice, and several times faster on CPU. Random init only matters for tests; real runs load weights.
        for p in (self.cls_token, self.pos_embed, self.time_embed):
            nn.init.normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for i, blk in enumerate(self.blocks):  # official fix_init_weight: rescale residual outputs by depth
            blk.attn.proj.weight.div_((2.0 * (i + 1)) ** 0.5)
            blk.mlp.fc2.weight.div_((2.0 * (i + 1)) ** 0.5)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) → patch tokens + channel and time embeddings, CLS first. Shapes: -> (B, 1 + C·A, D)."""
        b, c, t = x.shape
        a = t // self.patch_size
        tokens = self.patch_embed(x.reshape(b, c, a, self.patch_size))  # (B, C·A, D)
        pos = self.pos_embed[:, self.input_chans]  # (1, 1 + C, D)
        chan = pos[:, 1:].unsqueeze(2).expand(-1, -1, a, -1).reshape(1, c * a, -1)
        time = (self.time_weights @ self.time_embed[0]).unsqueeze(0).expand(c, -1, -1).reshape(1, c * a, -1)
        cls = (self.cls_token + pos[:, :1]).expand(b, -1, -1)
        return torch.cat((cls, tokens + chan + time), dim=1)

    def readout(self, h_last: torch.Tensor) -> torch.Tensor:
        """Fine-tuned format: ``fc_norm`` of the mean patch token (official mean pooling); else the paper's mean."""
        if hasattr(self, "fc_norm"):
            return self.fc_norm(h_last[:, 1:].mean(dim=1))
        return super().readout(h_last)


def convert_labram_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official checkpoint keys → this module's keys.

    Strips ``module.``; keeps the MEM wrapper's ``student.*`` (dropping its ``lm_head.*``/``projection_head.*``);
    drops the student's pre-training-only ``mask_token``/``lm_head.*``. Dropped keys are logged; any other
    top-level key next to ``student.*`` raises CheckpointMismatch.
    """
    state = strip_prefixes(state, ("module.",))
    dropped: list[str] = []
    if any(k.startswith("student.") for k in state):
        stray = sorted(k for k in state if not k.startswith("student.") and not k.startswith(MEM_HEAD_PREFIXES))
        if stray:
            raise CheckpointMismatch(f"LaBraM checkpoint has keys outside 'student.' that are not the MEM heads: "
                                     f"{stray[:8]}")
        dropped += sorted(k for k in state if not k.startswith("student."))
        state = {k.removeprefix("student."): v for k, v in state.items() if k.startswith("student.")}
    dropped += [k for k in PRETRAIN_ONLY_KEYS if k in state]
    state = {k: v for k, v in state.items() if k not in PRETRAIN_ONLY_KEYS}
    if dropped:
        log.info("LaBraM: dropped %d pre-training-only tensors: %s", len(dropped), ", ".join(dropped))
    return state


def load_labram_weights(backbone: LaBraM, path: str | Path, trust_pickle: bool = False) -> None:
    """Load ``labram-base.pth`` (or a fine-tuned LaBraM checkpoint) strictly into ``backbone``.

    Training checkpoints pickle an ``argparse.Namespace`` of their CLI args next to the weights; that one class is
    allowed for ``weights_only`` loading, anything else beyond tensors still needs ``trust_pickle=True``.
    """
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = read_state_dict(path, trust_pickle=trust_pickle)
    load_strict(backbone, convert_labram_state(state), what=f"LaBraM checkpoint {Path(path).name}")


@register_backbone("labram_base", modality="eeg", description="LaBraM-Base EEG transformer (5.8 M, 200 Hz, 1-s "
                   "patches, 0.1 mV units)", licence="MIT (LaBraM repository, code and released checkpoint)",
                   weights="github.com/935963004/LaBraM checkpoints/labram-base.pth (keys 'student.*')",
                   tiny_kwargs={"window_s": 2.0, "embed_dim": 100, "out_chans": 4, "depth": 2, "num_heads": 4,
                                "mlp_ratio": 1.0},
                   load_weights=load_labram_weights)
def labram_base(spec: SignalSpec | None = None, window_s: float = 30.0,
                channels: Sequence[str] = PAPER_EEG_CHANNELS, **kwargs: object) -> LaBraM:
    """LaBraM-Base on ``spec`` (default: the paper's 6 EEG channels × ``window_s`` at 200 Hz)."""
    return LaBraM(spec or labram_spec(channels, window_s), **kwargs)
