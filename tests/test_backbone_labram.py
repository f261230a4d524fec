"""LaBraM-Base adapter: official-format forward parity, dimensions, counts and strict checkpoint loading."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgebridge.backbones import get_backbone, get_backbone_entry
from edgebridge.backbones.labram import STANDARD_1020, LaBraM, channel_index, labram_base, labram_spec
from edgebridge.backbones.weights import CheckpointError, CheckpointMismatch

TINY = {"embed_dim": 100, "out_chans": 4, "depth": 2, "num_heads": 4, "mlp_ratio": 1.0}


class NotATensor:
    """Something a weights_only unpickler must refuse."""


def official_forward_last_block(model: LaBraM, x: torch.Tensor, names: list[str]) -> torch.Tensor:
    """Transcription of the official ``NeuralTransformer.forward_features`` (patch_embed → +pos → +time → blocks),
    reading the last block's output with a forward hook, as BioX-Bridge does."""
    captured = {}
    handle = model.blocks[-1].register_forward_hook(lambda m, i, o: captured.__setitem__("out", o))
    b, c, t = x.shape
    a = t // 200
    x4 = x.reshape(b, c, a, 200)
    input_chans = [0] + [STANDARD_1020.index(n) + 1 for n in names]
    h = model.patch_embed(x4)
    h = torch.cat((model.cls_token.expand(b, -1, -1), h), dim=1)
    pos_used = model.pos_embed[:, input_chans]
    pos = pos_used[:, 1:, :].unsqueeze(2).expand(b, -1, a, -1).flatten(1, 2)
    h = h + torch.cat((pos_used[:, 0:1, :].expand(b, -1, -1), pos), dim=1)
    h[:, 1:, :] += model.time_embed[:, 0:a, :].unsqueeze(1).expand(b, c, -1, -1).flatten(1, 2)
    for blk in model.blocks:
        h = blk(h)
    handle.remove()
    return captured["out"]


def official_state(model: LaBraM) -> dict[str, torch.Tensor]:
    """The MEM pre-training checkpoint layout: ``student.*`` plus pre-training-only heads."""
    d = model.cls_token.shape[-1]
    state = {f"student.{k}": v.clone() for k, v in model.state_dict().items()}
    state["student.mask_token"] = torch.zeros(1, 1, d)
    state["student.lm_head.weight"] = torch.randn(64, d)
    state["student.lm_head.bias"] = torch.zeros(64)
    state["lm_head.weight"] = torch.randn(64, d)
    state["lm_head.bias"] = torch.zeros(64)
    state["projection_head.0.weight"] = torch.randn(d, d)
    state["projection_head.0.bias"] = torch.zeros(d)
    return state


@pytest.mark.parametrize("kwargs", [TINY, {}], ids=["tiny", "base_fog_size"])
def test_run_blocks_equals_official_forward(kwargs: dict) -> None:
    torch.manual_seed(0)
    names = ["F3", "C3", "O1", "F4", "C4", "O2"]
    model = labram_base(window_s=3.0, **kwargs).eval()
    x = torch.randn(2, 6, 600) * 0.5
    with torch.no_grad():
        ours = model.run_blocks(model.embed(x), 0, model.n_blocks)
        ref = official_forward_last_block(model, x, names)
    assert ours.shape == (2, 19, model.cls_token.shape[-1])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_attention_matches_sdpa_with_q_and_v_bias() -> None:
    """q_bias/v_bias enter q and v only (k has no bias); q/k LayerNorm per head before the scaled product."""
    torch.manual_seed(1)
    model = labram_base(window_s=1.0, qkv_bias=True, **TINY).eval()
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
        x = torch.randn(2, 7, 100)
        w_q, w_k, w_v = attn.qkv.weight.chunk(3)
        heads = lambda t: t.reshape(2, 7, 4, 25).transpose(1, 2)  # noqa: E731
        q = attn.q_norm(heads(x @ w_q.T + attn.q_bias))
        k = attn.k_norm(heads(x @ w_k.T))
        v = heads(x @ w_v.T + attn.v_bias)
        ref = attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 7, 100))
        torch.testing.assert_close(attn(x), ref, atol=1e-5, rtol=0)


def test_patch_embed_layout_is_time_major_then_filters() -> None:
    """'B C NA T -> B NA (T C)': feature t·out_chans + c of token n is conv filter c at time step t."""
    torch.manual_seed(2)
    model = labram_base(window_s=2.0, **TINY).eval()
    x = torch.randn(1, 6, 2, 200)
    pe = model.patch_embed
    with torch.no_grad():
        conv = pe.gelu3(pe.norm3(pe.conv3(pe.gelu2(pe.norm2(pe.conv2(pe.gelu1(pe.norm1(pe.conv1(
            x.reshape(1, 1, 12, 200))))))))))
        out = pe(x)
    assert out.shape == (1, 12, 100)
    for n, t, c in [(0, 0, 0), (5, 3, 2), (11, 24, 3)]:
        assert out[0, n, t * 4 + c] == conv[0, c, n, t]


def test_time_embed_slices_then_interpolates() -> None:
    torch.manual_seed(3)
    model = labram_base(window_s=20.0, channels=["CZ"], **TINY).eval()
    slots = model.time_embed.detach()[0].numpy().copy()  # (16, D) pretrained-style rows
    with torch.no_grad():
        x = torch.randn(1, 1, 4000)
        with_time = model.embed(x)
        model.time_embed.zero_()
        table = (with_time - model.embed(x))[0, 1:].numpy()  # (20, D): rows added to the 20 one-second tokens
    # independent: np.interp of each feature over the 16 slots stretched onto 20 positions (align_corners=True)
    pos = np.linspace(0, 15, 20)
    ref = np.stack([np.interp(pos, np.arange(16), slots[:, j]) for j in range(slots.shape[1])], axis=1)
    assert np.abs(table - ref).max() < 1e-5
    short = labram_base(window_s=3.0, channels=["CZ"], **TINY)
    assert torch.equal(short.time_weights, torch.eye(16)[:3])  # ≤ 16 s: LaBraM's own slicing


def test_channel_names_pick_pos_embed_rows() -> None:
    assert channel_index("F3") == channel_index("EEG F3-REF") == channel_index("f3_a2") == STANDARD_1020.index("F3") + 1
    with pytest.raises(KeyError, match="XYZ"):
        channel_index("XYZ")
    torch.manual_seed(4)
    a = labram_base(window_s=2.0, channels=["F3", "C3"], **TINY).eval()
    b = labram_base(window_s=2.0, channels=["C3", "F3"], **TINY).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 2, 400)
    with torch.no_grad():
        ha, hb = a.embed(x), b.embed(x.flip(1))
    # tokens are channel-major (c·A + a): swapping channels and names swaps the two 2-token blocks
    torch.testing.assert_close(ha[:, 1:3], hb[:, 3:5])
    torch.testing.assert_close(ha[:, 3:5], hb[:, 1:3])
    with pytest.raises(ValueError, match="200"):
        LaBraM(labram_spec(window_s=2.0).replace(fs_hz=100.0))


def test_parameter_counts() -> None:
    """5,819,936 = upstream BioX instantiation 5,797,338 (no pos_embed, 30 random time rows, fc_norm, 2-class head)
    + 25,800 pos_embed (129×200) − 2,800 (16 instead of 30 time rows) − 402 (no head). The blocks alone are
    12 × 482,480 = 5,789,760 (no q/v bias: the checkpoint's factory uses qkv_bias=False)."""
    with torch.device("meta"):
        model = labram_base()
        finetuned = labram_base(n_classes=2)
    assert sum(p.numel() for p in model.parameters()) == 5_819_936
    assert sum(p.numel() for p in model.blocks.parameters()) == 12 * 482_480
    assert sum(p.numel() for p in finetuned.parameters()) == 5_819_936 - 400 + 400 + 402


def test_probe_dims_isruc_and_fog() -> None:
    with torch.device("meta"):  # shapes only: the numeric forward is checked at FOG size above
        isruc = labram_base(window_s=30.0).probe()
        fog = labram_base(window_s=3.0).probe()
    assert len(isruc) == 12 and {(d.in_tokens, d.in_dim, d.out_tokens, d.out_dim) for d in isruc} == {(181, 200,
                                                                                                         181, 200)}
    assert {(d.in_tokens, d.out_dim) for d in fog} == {(19, 200)}


def test_spec_units_and_registry() -> None:
    spec = labram_spec(window_s=30.0)
    assert spec.norm == "scale" and spec.scale == 0.01 and spec.fs_hz == 200 and spec.n_times == 6000
    entry = get_backbone_entry("labram_base")
    tiny = get_backbone("labram_base", **entry.tiny_kwargs)
    assert tiny.probe()[0].in_tokens == 1 + 6 * 2


def test_official_checkpoint_loads_strictly(tmp_path) -> None:
    torch.manual_seed(5)
    src = labram_base(window_s=3.0, **TINY).eval()
    path = tmp_path / "labram-base.pth"
    torch.save({"model": official_state(src), "epoch": 49, "args": argparse.Namespace(model="labram", lr=5e-4)}, path)
    torch.manual_seed(6)
    dst = labram_base(window_s=3.0, **TINY).eval()
    x = torch.randn(2, 6, 600)
    assert not torch.allclose(dst(x), src(x))
    get_backbone_entry("labram_base").load_weights(dst, path)
    torch.testing.assert_close(dst(x), src(x), atol=0, rtol=0)
    # DataParallel-style 'module.' prefix is accepted too
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "dp.pth")
    get_backbone_entry("labram_base").load_weights(dst, tmp_path / "dp.pth")


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.pop("student.blocks.0.gamma_1"), "missing keys: blocks.0.gamma_1"),
    (lambda s: s.__setitem__("student.blocks.1.attn.q_bias", torch.zeros(100)),
     "unexpected keys: blocks.1.attn.q_bias"),
    (lambda s: s.__setitem__("student.time_embed", torch.zeros(1, 30, 100)), "time_embed: checkpoint (1, 30, 100)"),
    (lambda s: s.__setitem__("teacher.cls_token", torch.zeros(1, 1, 100)), "teacher.cls_token"),
], ids=["missing", "extra", "mis-shaped", "stray-top-level"])
def test_bad_checkpoints_raise_naming_keys(tmp_path, edit, needle: str) -> None:
    model = labram_base(window_s=3.0, **TINY)
    state = official_state(model)
    edit(state)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatch) as info:
        get_backbone_entry("labram_base").load_weights(model, tmp_path / "bad.pth")
    assert needle in str(info.value)


def test_full_pickle_refused_without_trust(tmp_path) -> None:
    model = labram_base(window_s=3.0, **TINY)
    torch.save({"model": official_state(model), "extra": NotATensor()}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="trust") as info:
        get_backbone_entry("labram_base").load_weights(model, tmp_path / "pickled.pth")
    assert not isinstance(info.value, CheckpointMismatch)
    get_backbone_entry("labram_base").load_weights(model, tmp_path / "pickled.pth", trust_pickle=True)


def test_exports_to_onnx(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(7)
    model = labram_base(window_s=3.0, **TINY).eval()
    x = torch.randn(2, 6, 600)
    path = tmp_path / "labram.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert np.abs(y - model(x).detach().numpy()).max() < 1e-4
