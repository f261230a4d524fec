"""HuBERT-ECG adapter: published sizes, HF key layout, independent attention/weight-norm checks, slicing ==
official forward, and loading of both official file styles (HF safetensors, pickled SSL ``.pt``)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from edgebridge.backbones import get_backbone, get_backbone_entry
from edgebridge.backbones.convert import weight_norm_to_legacy
from edgebridge.backbones.hubert_ecg import HuBERTECG, hubert_ecg_small
from edgebridge.backbones.layers import SeparateQKVAttention
from edgebridge.backbones.weights import CheckpointError, CheckpointMismatch

TINY = get_backbone_entry("hubert_ecg_small").tiny_kwargs
EXTRAS = ("final_proj.", "label_embedding.", "masked_spec_embed")


def _tiny(seed: int = 0, **kwargs) -> HuBERTECG:
    torch.manual_seed(seed)
    return get_backbone("hubert_ecg_small", **{**TINY, **kwargs}).eval()


def _last_block_by_hook(model: HuBERTECG, flat: torch.Tensor) -> torch.Tensor:
    captured = {}
    handle = model.encoder.layers[-1].register_forward_hook(lambda m, i, o: captured.setdefault("out", o[0]))
    try:
        model.forward_official(flat)
    finally:
        handle.remove()
    return captured["out"]


@pytest.mark.parametrize("name, total, backbone", [
    ("hubert_ecg_small", 30_366_592, 30_209_152),   # total = anchor_perf.md §4 (upstream HuBERTECG, vocab [100])
    ("hubert_ecg_base", 93_021_312, 92_798_080),    # published 92.8 M = backbone without pretraining heads
    ("hubert_ecg_large", 188_187_968, 187_643_776),  # published 187.6 M
])
def test_parameter_counts(name, total, backbone):
    with torch.device("meta"):
        model = get_backbone(name)
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == total
    assert sum(p.numel() for k, p in params.items() if not k.startswith(EXTRAS)) == backbone
    assert model.blocks_path == "encoder.layers" and model.layout == "BTD"


def test_hf_module_tree_names():
    keys = set(_tiny().state_dict())
    for key in ("feature_extractor.conv_layers.0.conv.weight", "feature_extractor.conv_layers.0.layer_norm.bias",
                "feature_extractor.conv_layers.4.conv.weight", "feature_projection.layer_norm.weight",
                "feature_projection.projection.bias", "masked_spec_embed",
                "encoder.pos_conv_embed.conv.bias", "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
                "encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.layer_norm.weight",
                "encoder.layers.1.attention.q_proj.weight", "encoder.layers.1.attention.out_proj.bias",
                "encoder.layers.0.layer_norm.weight", "encoder.layers.0.feed_forward.intermediate_dense.weight",
                "encoder.layers.0.feed_forward.output_dense.bias", "encoder.layers.0.final_layer_norm.bias",
                "final_proj.0.weight", "label_embedding.0.weight"):
        assert key in keys, key
    assert "feature_extractor.conv_layers.1.layer_norm.weight" not in keys  # group norm on the first conv only


def test_attention_equals_torch_reference_implementation():
    torch.manual_seed(0)
    att = SeparateQKVAttention(32, 4).eval()
    x = torch.randn(2, 7, 32)
    ref, _ = F.multi_head_attention_forward(
        x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), 32, 4,
        torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight]),
        torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias]), None, None, False, 0.0,
        att.out_proj.weight, att.out_proj.bias, training=False, need_weights=False)
    with torch.no_grad():
        torch.testing.assert_close(att(x), ref.transpose(0, 1), atol=1e-5, rtol=1e-5)


def test_positional_conv_uses_weight_norm_over_dims_0_1():
    model = _tiny()
    pos = model.encoder.pos_conv_embed
    g = pos.conv.parametrizations.weight.original0
    v = pos.conv.parametrizations.weight.original1
    weight = g * v / v.norm(dim=(0, 1), keepdim=True)
    x = torch.randn(2, 10, 32)
    ref = F.conv1d(x.transpose(1, 2), weight, pos.conv.bias, padding=64, groups=16)[:, :, :-1]
    with torch.no_grad():
        torch.testing.assert_close(pos(x), F.gelu(ref).transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_tiny_block_slicing_equals_official_forward_and_token_counts():
    model = _tiny()
    x = torch.randn(3, *model.spec.input_shape)
    with torch.no_grad():
        sliced = model.run_blocks(model.embed(x), 0, model.n_blocks)
        official = model.forward_official(x.reshape(3, -1))
        torch.testing.assert_close(sliced, _last_block_by_hook(model, x.reshape(3, -1)), atol=1e-5, rtol=0)
        torch.testing.assert_close(sliced, official, atol=1e-5, rtol=0)
    # ×64 conv stem: 3000 samples (ISRUC 30 s) -> 46 tokens
    assert _tiny(window_s=30.0).probe()[0].in_tokens == 46


def test_real_small_at_the_papers_60s_window():
    torch.manual_seed(0)
    model = hubert_ecg_small().eval()
    assert model.spec.fs_hz == 100.0 and model.spec.n_times == 6000 and model.spec.bandpass_hz == (0.05, 47.0)
    x = torch.randn(1, 1, 6000)
    with torch.no_grad():
        torch.testing.assert_close(model.run_blocks(model.embed(x), 0, 8), _last_block_by_hook(model, x.reshape(1, -1)),
                                   atol=1e-5, rtol=0)
    dims = model.probe()
    assert len(dims) == 8
    assert all((d.in_tokens, d.in_dim, d.out_tokens, d.out_dim) == (93, 512, 93, 512) for d in dims)


def _fake_config_module(monkeypatch) -> type:
    """A ``hubert_ecg.HuBERTECGConfig`` stand-in that can be pickled now and is not importable at load time."""
    mod = types.ModuleType("hubert_ecg")

    class HuBERTECGConfig:
        def __init__(self) -> None:
            self.hidden_size, self.vocab_sizes = 32, [5]

    HuBERTECGConfig.__module__ = "hubert_ecg"
    HuBERTECGConfig.__qualname__ = "HuBERTECGConfig"
    mod.HuBERTECGConfig = HuBERTECGConfig
    monkeypatch.setitem(sys.modules, "hubert_ecg", mod)
    return HuBERTECGConfig


def test_official_ssl_pt_with_pickled_config_and_legacy_weight_norm(tmp_path, monkeypatch):
    src, dst = _tiny(seed=0), _tiny(seed=1)
    config_cls = _fake_config_module(monkeypatch)
    state = weight_norm_to_legacy(src.state_dict())
    assert "encoder.pos_conv_embed.conv.weight_g" in state
    path = tmp_path / "hubert_ecg_small.pt"
    torch.save({"model_state_dict": state, "model_config": config_cls(), "global_step": 7}, path)
    monkeypatch.delitem(sys.modules, "hubert_ecg")  # the user has no HuBERT-ECG package installed
    load = get_backbone_entry("hubert_ecg_small").load_weights
    with pytest.raises(CheckpointError, match=r"HuBERTECGConfig.*trust_pickle=True"):
        load(dst, path)
    x = torch.randn(2, *src.spec.input_shape)
    load(dst, path, trust_pickle=True)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), atol=0, rtol=0)


def test_hf_safetensors_loads_without_trust(tmp_path):
    src, dst = _tiny(seed=0), _tiny(seed=1)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    get_backbone_entry("hubert_ecg_small").load_weights(dst, path)
    x = torch.randn(1, *src.spec.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), atol=0, rtol=0)


@pytest.mark.parametrize("edit, named", [
    (lambda s: s.pop("encoder.layers.1.attention.k_proj.weight"), "missing keys: encoder.layers.1.attention.k_proj"),
    (lambda s: s.__setitem__("encoder.layers.9.attention.k_proj.weight", torch.zeros(1)), "unexpected keys: encoder"),
    (lambda s: s.__setitem__("label_embedding.0.weight", torch.zeros(100, 8)), "mis-shaped keys: label_embedding.0"),
])
def test_checkpoint_that_does_not_fit_raises_naming_the_key(tmp_path, edit, named):
    model = _tiny()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    edit(state)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointMismatch, match=named):
        get_backbone_entry("hubert_ecg_small").load_weights(model, path)
