"""ECG-FM adapter: published size, fairseq-signals key layout, slicing == official forward, lead expansion,
and loading of a fairseq-style checkpoint (``model`` + pickled cfg, legacy weight-norm keys)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F

from edgebridge.backbones import get_backbone, get_backbone_entry
from edgebridge.backbones.convert import weight_norm_to_legacy
from edgebridge.backbones.ecg_fm import ECGFM, ecg_fm
from edgebridge.backbones.layers import SeparateQKVAttention
from edgebridge.backbones.weights import CheckpointError, CheckpointMismatch

TINY = get_backbone_entry("ecg_fm").tiny_kwargs


def _tiny(seed: int = 0, **kwargs) -> ECGFM:
    torch.manual_seed(seed)
    return get_backbone("ecg_fm", **{**TINY, **kwargs}).eval()


def _last_block_by_hook(model: ECGFM, source: torch.Tensor) -> torch.Tensor:
    captured = {}
    handle = model.encoder.layers[-1].register_forward_hook(lambda m, i, o: captured.setdefault("out", o[0]))
    try:
        model.forward_official(source)
    finally:
        handle.remove()
    return captured["out"]


def test_parameter_count_is_the_published_90_9_m():
    with torch.device("meta"):
        model = ecg_fm()
    n = sum(p.numel() for p in model.parameters())
    assert n == 90_883_072 and round(n / 1e6, 1) == 90.9  # bowang-lab/ECG-FM README: 90.9 M
    assert model.n_blocks == 12 and model.blocks_path == "encoder.layers" and model.layout == "BTD"
    assert model.encoder.layers[0].fc1.in_features == 768 and model.spec.n_times == 30_000


def test_fairseq_module_tree_names():
    keys = set(_tiny().state_dict())
    for key in ("feature_extractor.conv_layers.0.0.weight", "feature_extractor.conv_layers.0.2.weight",
                "feature_extractor.conv_layers.3.0.weight", "layer_norm.weight", "post_extract_proj.weight",
                "mask_emb", "encoder.pos_conv.0.bias", "encoder.pos_conv.0.parametrizations.weight.original0",
                "encoder.layers.0.self_attn.k_proj.weight", "encoder.layers.1.self_attn.out_proj.bias",
                "encoder.layers.0.self_attn_layer_norm.weight", "encoder.layers.0.fc1.weight",
                "encoder.layers.0.fc2.bias", "encoder.layers.0.final_layer_norm.weight", "encoder.layer_norm.bias",
                "quantizer.vars", "quantizer.weight_proj.weight", "project_q.weight", "final_proj.bias"):
        assert key in keys, key
    assert not any(k.startswith("feature_extractor.conv_layers.1.2") for k in keys)  # GroupNorm on layer 0 only


def test_attention_equals_torch_reference_implementation():
    torch.manual_seed(0)
    att = SeparateQKVAttention(32, 4).eval()
    x = torch.randn(2, 9, 32)
    xt = x.transpose(0, 1)  # fairseq runs time-major
    ref, _ = F.multi_head_attention_forward(
        xt, xt, xt, 32, 4, torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight]),
        torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias]), None, None, False, 0.0,
        att.out_proj.weight, att.out_proj.bias, training=False, need_weights=False)
    with torch.no_grad():
        torch.testing.assert_close(att(x), ref.transpose(0, 1), atol=1e-5, rtol=1e-5)


def test_tiny_12_lead_block_slicing_equals_official_forward():
    model = _tiny(n_leads=12)
    x = torch.randn(2, 12, model.spec.n_times)
    with torch.no_grad():
        sliced = model.run_blocks(model.embed(x), 0, model.n_blocks)
        torch.testing.assert_close(sliced, _last_block_by_hook(model, x), atol=1e-5, rtol=0)
        torch.testing.assert_close(sliced, model.forward_official(x), atol=1e-5, rtol=0)


def test_one_lead_is_expanded_as_upstream_does():
    model = _tiny()
    assert model.spec.n_channels == 1
    x = torch.randn(2, 1, model.spec.n_times)
    zero_padded = torch.cat([x, torch.zeros(2, 11, x.shape[-1])], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_official(zero_padded), atol=1e-5, rtol=0)
        model.lead_expansion = "repeat"
        torch.testing.assert_close(model(x), model.forward_official(x.repeat(1, 12, 1)), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="lead_expansion"):
        _tiny(lead_expansion="mean")


def test_token_count_for_the_papers_60s_window():
    # four (k=2, s=2) convs: 30 000 samples at 500 Hz -> 1 875 tokens (upstream num_tokens for WESAD)
    dims = _tiny(window_s=60.0).probe()
    assert dims[0].in_tokens == 1875 and dims[-1].out_tokens == 1875


def _fake_fairseq_cfg(monkeypatch) -> type:
    mod = types.ModuleType("fairseq_signals_cfg_for_test")

    class DictConfig:
        def __init__(self) -> None:
            self.model = {"_name": "wav2vec2_cmsc", "encoder_embed_dim": 32}

    DictConfig.__module__, DictConfig.__qualname__ = mod.__name__, "DictConfig"
    mod.DictConfig = DictConfig
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return DictConfig


def test_fairseq_checkpoint_with_pickled_cfg_loads_strictly(tmp_path, monkeypatch):
    src, dst = _tiny(seed=0), _tiny(seed=1)
    cfg_cls = _fake_fairseq_cfg(monkeypatch)
    state = weight_norm_to_legacy(src.state_dict())
    assert "encoder.pos_conv.0.weight_g" in state and "encoder.pos_conv.0.weight_v" in state
    path = tmp_path / "mimic_iv_ecg_physionet_pretrained.pt"
    torch.save({"args": None, "cfg": cfg_cls(), "model": state, "optimizer_history": []}, path)
    monkeypatch.delitem(sys.modules, cfg_cls.__module__)
    load = get_backbone_entry("ecg_fm").load_weights
    with pytest.raises(CheckpointError, match="trust_pickle=True"):
        load(dst, path)
    load(dst, path, trust_pickle=True)
    x = torch.randn(2, 1, src.spec.n_times)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), atol=0, rtol=0)


@pytest.mark.parametrize("edit, named", [
    (lambda s: s.pop("quantizer.vars"), "missing keys: quantizer.vars"),
    (lambda s: s.__setitem__("w2v_encoder.proj.weight", torch.zeros(1)), "unexpected keys: w2v_encoder.proj"),
    (lambda s: s.__setitem__("encoder.layers.0.fc1.weight", torch.zeros(3, 3)), "mis-shaped keys: encoder.layers.0"),
])
def test_checkpoint_that_does_not_fit_raises_naming_the_key(tmp_path, edit, named):
    model = _tiny()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    edit(state)
    path = tmp_path / "bad.pt"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointMismatch, match=named):
        get_backbone_entry("ecg_fm").load_weights(model, path)
