"""PaPaGei-S adapter: published size, official key layout, block slicing == official forward, strict loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgebridge.backbones import get_backbone, get_backbone_entry
from edgebridge.backbones.papagei import BasicBlock, PaPaGei, papagei_s
from edgebridge.backbones.weights import CheckpointError, CheckpointMismatch

TINY = get_backbone_entry("papagei_s").tiny_kwargs


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running stats so eval-mode BN is not the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _tiny(seed: int = 0) -> PaPaGei:
    torch.manual_seed(seed)
    model = get_backbone("papagei_s", **TINY).eval()
    _randomise_bn(model, seed)
    return model


def _last_block_by_hook(model: PaPaGei, x: torch.Tensor) -> torch.Tensor:
    captured = {}
    handle = model.basicblock_list[-1].register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    try:
        model.forward_official(x)
    finally:
        handle.remove()
    return captured["out"]


def test_parameter_count_is_the_published_papagei_s_size():
    with torch.device("meta"):
        model = papagei_s()
    assert sum(p.numel() for p in model.parameters()) == 5_785_612  # anchor_perf.md §4 (upstream class)
    assert model.n_blocks == 18 and model.blocks_path == "basicblock_list" and model.layout == "BCL"


def test_official_module_tree_names():
    keys = set(papagei_s(**TINY).state_dict())
    for key in ("first_block_conv.conv.weight", "first_block_bn.running_var", "basicblock_list.0.bn1.weight",
                "basicblock_list.1.conv1.conv.weight", "basicblock_list.5.conv2.conv.bias", "final_bn.weight",
                "dense.weight", "expert_layers_1.0.0.weight", "expert_layers_1.1.2.bias",
                "expert_layers_2.0.3.weight", "gating_network_1.0.weight", "gating_network_2.0.bias"):
        assert key in keys, key


def test_basic_block_matches_hand_written_same_padding_arithmetic():
    torch.manual_seed(1)
    block = BasicBlock(4, 8, kernel_size=3, stride=2, groups=1, downsample=True).eval()
    _randomise_bn(block)
    x = torch.randn(2, 4, 11)
    bn1, bn2 = block.bn1, block.bn2

    def bn_eval(m, t):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    # L=11, k=3, s=2 -> 6 outputs, total pad (6-1)*2+3-11 = 2 -> (1, 1); stride-1 conv pads (1, 1);
    # identity: pad (0, 1) then max-pool 2 -> 6; channels 4 -> 8 zero-padded (2, 2).
    h = F.conv1d(F.pad(F.relu(bn_eval(bn1, x)), (1, 1)), block.conv1.conv.weight, block.conv1.conv.bias, stride=2)
    h = F.conv1d(F.pad(F.relu(bn_eval(bn2, h)), (1, 1)), block.conv2.conv.weight, block.conv2.conv.bias)
    identity = F.pad(F.max_pool1d(F.pad(x, (0, 1)), 2), (0, 0, 2, 2))
    with torch.no_grad():
        torch.testing.assert_close(block(x), h + identity, atol=1e-6, rtol=1e-5)


def test_tiny_block_slicing_equals_official_forward():
    model = _tiny()
    x = torch.randn(3, *model.spec.input_shape)
    with torch.no_grad():
        sliced = model.run_blocks(model.embed(x), 0, model.n_blocks)
        torch.testing.assert_close(sliced, _last_block_by_hook(model, x), atol=1e-5, rtol=0)
        # the official head pools final_bn/relu of that same tensor
        z = model.final_relu(model.final_bn(sliced)).mean(-1)
        torch.testing.assert_close(model.forward_official(x)[3], z, atol=1e-6, rtol=0)


def test_real_papagei_s_at_the_papers_60s_window():
    torch.manual_seed(0)
    model = papagei_s().eval()
    assert model.spec.fs_hz == 125.0 and model.spec.n_times == 7500 and model.spec.bandpass_hz == (0.5, 12.0)
    x = torch.randn(1, 1, 7500)
    with torch.no_grad():
        torch.testing.assert_close(model.run_blocks(model.embed(x), 0, 18), _last_block_by_hook(model, x),
                                   atol=1e-5, rtol=0)
    dims = model.probe()
    assert (dims[11].in_tokens, dims[11].in_dim) == (235, 128)  # upstream num_tokens table: block 11 -> (128, 235)
    assert (dims[17].in_tokens, dims[17].in_dim) == (30, 512)
    assert (dims[17].out_tokens, dims[17].out_dim) == (15, 512)
    assert dims[4].out_dim == 64  # bridge input dim used by wesad_ecg2ppg (basicblock_list[4])


def _save(obj: object, path) -> None:
    torch.save(obj, path)


def test_official_style_checkpoint_loads_strictly_and_reproduces_outputs(tmp_path):
    src, dst = _tiny(seed=0), _tiny(seed=1)
    official = {f"module.{k}": v.clone() for k, v in src.state_dict().items()}  # DataParallel-saved, as on Zenodo
    path = tmp_path / "papagei_s.pt"
    _save(official, path)
    x = torch.randn(2, *src.spec.input_shape)
    with torch.no_grad():
        assert not torch.allclose(src(x), dst(x))
        get_backbone_entry("papagei_s").load_weights(dst, path)
        torch.testing.assert_close(dst(x), src(x), atol=0, rtol=0)
        for a, b in zip(src.forward_official(x), dst.forward_official(x), strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("edit, named", [
    (lambda s: s.pop("module.dense.weight"), "missing keys: dense.weight"),
    (lambda s: s.__setitem__("module.projector.0.weight", torch.zeros(2, 2)), "unexpected keys: projector.0.weight"),
    (lambda s: s.__setitem__("module.final_bn.weight", torch.zeros(3)), "mis-shaped keys: final_bn.weight"),
])
def test_checkpoint_that_does_not_fit_raises_naming_the_key(tmp_path, edit, named):
    model = _tiny()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    edit(state)
    path = tmp_path / "bad.pt"
    _save(state, path)
    with pytest.raises(CheckpointMismatch, match=named):
        get_backbone_entry("papagei_s").load_weights(model, path)


class _Opaque:
    """Stands for any non-tensor object a checkpoint might pickle."""


def test_full_pickle_is_refused_without_trust(tmp_path):
    model = _tiny()
    path = tmp_path / "pickled.pt"
    _save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "extra": _Opaque()}, path)
    with pytest.raises(CheckpointError, match="trust_pickle=True"):
        get_backbone_entry("papagei_s").load_weights(model, path)
    get_backbone_entry("papagei_s").load_weights(model, path, trust_pickle=True)  # allowed once trusted


def test_corrupt_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(CheckpointError):
        get_backbone_entry("papagei_s").load_weights(_tiny(), path)
