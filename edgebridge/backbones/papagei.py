"""PaPaGei-S (Nokia Bell Labs, ICLR 2025): 1-D ResNet PPG foundation model with two MoE regression heads.

Module and parameter names reproduce ``ResNet1DMoE`` of the official repository
(github.com/Nokia-Bell-Labs/papagei-foundation-model, ``models/resnet.py``): ``first_block_conv.conv``,
``first_block_bn``, ``basicblock_list.<i>.{bn1,conv1.conv,bn2,conv2.conv}``, ``final_bn``, ``dense``,
``expert_layers_{1,2}``, ``gating_network_{1,2}``. The official ``papagei_s.pt`` (Zenodo 13983110) is a plain
state dict saved from a DataParallel model (``module.`` prefix), so it loads with ``weights_only=True``.

Deviations from the official code that do not change any number: the residual add is out-of-place (the official
``out += identity`` breaks autograd through hooks and some exporters), and the channel zero-padding of the identity
is one ``F.pad`` on the channel axis instead of transpose/pad/transpose. "SAME" padding is computed in Python from
``x.shape[-1]`` as upstream does, so an exported graph is fixed to the window length it was traced with.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgebridge.backbones.base import Backbone
from edgebridge.backbones.convert import load_official
from edgebridge.backbones.registry import register_backbone
from edgebridge.spec import SignalSpec


def same_padding(n_in: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """(left, right) zero padding so that a strided window yields ceil(n_in / stride) outputs (TF "SAME")."""
    n_out = (n_in + stride - 1) // stride
    total = max(0, (n_out - 1) * stride + kernel_size - n_in)
    return total // 2, total - total // 2


class Conv1dPadSame(nn.Module):
    """Official ``MyConv1dPadSame``: Conv1d (attribute ``conv``) after SAME zero padding.

    Shapes: (B, C_in, L) -> (B, C_out, ceil(L / stride)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, same_padding(x.shape[-1], self.kernel_size, self.stride)))


class MaxPool1dPadSame(nn.Module):
    """Official ``MyMaxPool1dPadSame``: pad as for stride 1, then MaxPool1d(kernel) (whose stride is the kernel).

    Shapes: (B, C, L) -> (B, C, ceil(L / kernel_size)).
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.max_pool = nn.MaxPool1d(kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.max_pool(F.pad(x, same_padding(x.shape[-1], self.kernel_size, 1)))


class BasicBlock(nn.Module):
    """Pre-activation residual block (BN-ReLU-Dropout-Conv ×2); strided blocks max-pool the identity and
    channel-doubling blocks zero-pad it symmetrically on the channel axis.

    Shapes: (B, C_in, L) -> (B, C_out, ceil(L / stride)) with stride 1 unless ``downsample``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int,
                 downsample: bool, use_bn: bool = True, use_do: bool = True, is_first_block: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.downsample = downsample
        self.stride = stride if downsample else 1
        self.groups = groups
        self.is_first_block = is_first_block
        self.use_bn = use_bn
        self.use_do = use_do
        self.bn1 = nn.BatchNorm1d(in_channels)
        self.relu1 = nn.ReLU()
        self.do1 = nn.Dropout(p=0.5)
        self.conv1 = Conv1dPadSame(in_channels, out_channels, kernel_size, self.stride, groups)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.relu2 = nn.ReLU()
        self.do2 = nn.Dropout(p=0.5)
        self.conv2 = Conv1dPadSame(out_channels, out_channels, kernel_size, 1, groups)
        self.max_pool = MaxPool1dPadSame(kernel_size=self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if not self.is_first_block:
            if self.use_bn:
                out = self.bn1(out)
            out = self.relu1(out)
            if self.use_do:
                out = self.do1(out)
        out = self.conv1(out)
        if self.use_bn:
            out = self.bn2(out)
        out = self.relu2(out)
        if self.use_do:
            out = self.do2(out)
        out = self.conv2(out)
        identity = self.max_pool(x) if self.downsample else x
        if self.out_channels != self.in_channels:
            ch1 = (self.out_channels - self.in_channels) // 2
            ch2 = self.out_channels - self.in_channels - ch1
            identity = F.pad(identity, (0, 0, ch1, ch2))
        return out + identity


def block_channels(i_block: int, base_filters: int, increasefilter_gap: int) -> tuple[int, int]:
    """(in, out) channels of block ``i_block``, as the official constructor computes them."""
    if i_block == 0:
        return base_filters, base_filters
    c_in = int(base_filters * 2 ** ((i_block - 1) // increasefilter_gap))
    c_out = c_in * 2 if i_block % increasefilter_gap == 0 else c_in
    return c_in, c_out


class PaPaGei(Backbone):
    """``ResNet1DMoE`` as a Backbone: embed = first conv/BN/ReLU, blocks = ``basicblock_list`` (layout BCL).

    Shapes: (B, 1, T) -> embed (B, base_filters, T) -> last block (B, C_last, T / 2**(n_block // 2)).
    """

    layout = "BCL"
    blocks_path = "basicblock_list"

    def __init__(self, spec: SignalSpec, base_filters: int = 32, kernel_size: int = 3, stride: int = 2,
                 groups: int = 1, n_block: int = 18, n_classes: int = 512, n_experts: int = 3,
                 downsample_gap: int = 2, increasefilter_gap: int = 4, use_bn: bool = True,
                 use_do: bool = True) -> None:
        super().__init__(spec)
        self.use_bn = use_bn
        self.first_block_conv = Conv1dPadSame(spec.n_channels, base_filters, kernel_size, 1)
        self.first_block_bn = nn.BatchNorm1d(base_filters)
        self.first_block_relu = nn.ReLU()
        self.basicblock_list = nn.ModuleList()
        c_out = base_filters
        for i in range(n_block):
            c_in, c_out = block_channels(i, base_filters, increasefilter_gap)
            self.basicblock_list.append(BasicBlock(c_in, c_out, kernel_size, stride, groups,
                                                   downsample=i % downsample_gap == 1, use_bn=use_bn,
                                                   use_do=use_do, is_first_block=i == 0))
        self.final_bn = nn.BatchNorm1d(c_out)
        self.final_relu = nn.ReLU()
        self.dense = nn.Linear(c_out, n_classes)
        # MoE regression heads: unused by the bridge, kept so the official checkpoint loads strictly.
        self.expert_layers_1 = nn.ModuleList(
            nn.Sequential(nn.Linear(c_out, c_out // 2), nn.ReLU(), nn.Linear(c_out // 2, 1)) for _ in range(n_experts))
        self.gating_network_1 = nn.Sequential(nn.Linear(c_out, n_experts), nn.Softmax(dim=1))
        self.expert_layers_2 = nn.ModuleList(
            nn.Sequential(nn.Linear(c_out, c_out // 2), nn.ReLU(), nn.Dropout(0.3), nn.Linear(c_out // 2, 1))
            for _ in range(n_experts))
        self.gating_network_2 = nn.Sequential(nn.Linear(c_out, n_experts), nn.Softmax(dim=1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Shapes: (B, C, T) -> (B, base_filters, T)."""
        out = self.first_block_conv(x)
        if self.use_bn:
            out = self.first_block_bn(out)
        return self.first_block_relu(out)

    @staticmethod
    def _moe(experts: nn.ModuleList, gate: nn.Module, z: torch.Tensor) -> torch.Tensor:
        expert_out = torch.stack([e(z) for e in experts], dim=1)  # (B, n_experts, 1)
        return (gate(z).unsqueeze(2) * expert_out).sum(dim=1)

    def forward_official(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The official ``ResNet1DMoE.forward``: (class/embedding head, MoE 1, MoE 2, pooled features).

        Shapes: (B, C, T) -> ((B, n_classes), (B, 1), (B, 1), (B, C_last)).
        """
        out = self.embed(x)
        for block in self.basicblock_list:
            out = block(out)
        if self.use_bn:
            out = self.final_bn(out)
        z = self.final_relu(out).mean(-1)
        return (self.dense(z), self._moe(self.expert_layers_1, self.gating_network_1, z),
                self._moe(self.expert_layers_2, self.gating_network_2, z), z)


def papagei_spec(window_s: float = 60.0, stride_s: float = 5.0) -> SignalSpec:
    """PaPaGei input: 1-channel PPG at 125 Hz, 0.5–12 Hz band-pass, z-scored per window.

    The paper's WESAD windows are 60 s with a 5-s hop (7 500 samples); PaPaGei itself was pretrained on 10 s.
    (Upstream filters with a Chebyshev-I order-4 0.5-dB band-pass over the whole session; the SignalSpec filter
    is a per-window Butterworth, which is what streaming can reproduce.)
    """
    return SignalSpec(modality="ppg", fs_hz=125.0, channels=("ppg",), window_s=window_s, stride_s=stride_s,
                      bandpass_hz=(0.5, 12.0), norm="zscore")


def load_papagei_weights(backbone: PaPaGei, path: str | Path, trust_pickle: bool = False) -> None:
    """Load ``papagei_s.pt`` (``module.``-prefixed state dict) strictly into ``backbone``."""
    load_official(backbone, path, trust_pickle=trust_pickle, prefixes=("module.",),
                  hint="PaPaGei checkpoint (papagei_s.pt from Zenodo 13983110):")


@register_backbone(
    "papagei_s", modality="ppg",
    description="PaPaGei-S PPG foundation model (ResNet1DMoE, 18 blocks, 5.79 M params), 125 Hz",
    licence="BSD-3-Clause (weights, Zenodo 13983110); code BSD-3-Clause-Clear",
    weights="https://zenodo.org/records/13983110 (papagei_s.pt)",
    tiny_kwargs={"window_s": 4.0, "base_filters": 4, "n_block": 6, "n_classes": 8, "n_experts": 2},
    load_weights=load_papagei_weights)
def papagei_s(spec: SignalSpec | None = None, window_s: float = 60.0, stride_s: float = 5.0,
              base_filters: int = 32, kernel_size: int = 3, n_block: int = 18, n_classes: int = 512,
              n_experts: int = 3) -> PaPaGei:
    """PaPaGei-S as released (base_filters 32, kernel 3, stride 2, 18 blocks, 512-d, 3 experts).

    ``spec`` overrides the default ``papagei_spec(window_s, stride_s)``.
    """
    return PaPaGei(spec or papagei_spec(window_s, stride_s), base_filters=base_filters, kernel_size=kernel_size,
                   n_block=n_block, n_classes=n_classes, n_experts=n_experts)
