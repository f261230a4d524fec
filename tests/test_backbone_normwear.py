"""NormWear adapter: official-style forward parity, layouts, counts and strict checkpoint loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgebridge.backbones import get_backbone, get_backbone_entry
from edgebridge.backbones.cwt import scalogram_numpy
from edgebridge.backbones.normwear import DECODER_KEYS, NormWear, normwear, sincos_2d
from edgebridge.backbones.weights import CheckpointError, CheckpointMismatch

TINY = {"window_s": 1.0, "fs_hz": 65.0, "embed_dim": 32, "depth": 3, "num_heads": 2, "decoder_dim": 16,
        "decoder_depth": 1}


class NotATensor:
    """Something a weights_only unpickler must refuse."""


def tiny(seed: int = 0, **kwargs: object) -> NormWear:
    torch.manual_seed(seed)
    return normwear(**{**TINY, **kwargs}).eval()


def official_encoder_layer(layer: torch.nn.Module, x: torch.Tensor, nvar: int) -> torch.Tensor:
    """Transcription of the official ``EncoderLayer.forward`` (variate encoder, then CLS fusion across variables)."""
    _, n, e = x.shape
    x_out = layer.variate_encoder(x)
    if layer.cls_fusion is not None:
        x_out = torch.reshape(x_out, (-1, nvar, n, e))
        patch_tokens = x_out[:, :, 1:, :]
        cls = layer.cls_fusion(x_out[:, :, 0, :]).unsqueeze(2)
        x_out = torch.cat((cls, patch_tokens), dim=2)
        bs, n_vars, n, e = x_out.shape
        x_out = torch.reshape(x_out, (bs * n_vars, n, e))
    return x_out


def official_signal_embedding(model: NormWear, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Transcription of ``NormWear.get_signal_embedding`` fed with scipy-algorithm scalograms (NumPy reference);
    returns (last encoder block output read by a forward hook, final normed output)."""
    core = model.backbone
    spec = torch.from_numpy(np.stack([scalogram_numpy(s) for s in x])).float()  # (N, nvar, 3, L, F)
    n, nvar, ch, length, f = spec.shape
    h = core.patch_embed(torch.reshape(spec, (n * nvar, ch, length, f)))
    gh, gw = (length - 9) // 9 + 1, (f - 5) // 5 + 1  # pos_adjust, by arithmetic instead of a randn forward
    pos_tokens = core.pos_embed[:, 1:].reshape(-1, 43, 13, h.shape[-1]).permute(0, 3, 1, 2)
    pos_tokens = F.interpolate(pos_tokens, size=(gh, gw), mode="bicubic", align_corners=False)
    pos_embed = torch.cat((core.pos_embed[:, :1], pos_tokens.permute(0, 2, 3, 1).flatten(1, 2)), dim=1)
    h = h + pos_embed[:, 1:, :]
    h = torch.cat(((core.cls_token + pos_embed[:, :1, :]).expand(h.shape[0], -1, -1), h), dim=1)
    captured = {}
    for i, blk in enumerate(core.encoder_blocks):
        h = official_encoder_layer(blk, h, nvar)
        if i == len(core.encoder_blocks) - 1:
            captured["out"] = h
    out = core.norm(h)
    return captured["out"], out.reshape(n, nvar, *out.shape[1:])


def test_run_blocks_equals_official_forward() -> None:
    model = tiny()
    x = np.random.default_rng(0).standard_normal((2, 3, 65)).astype(np.float32)
    with torch.no_grad():
        ref_last, ref_out = official_signal_embedding(model, x)
        captured = {}
        handle = model.backbone.encoder_blocks[-1].register_forward_hook(lambda m, i, o: captured.setdefault("o", o))
        ours_out = model.signal_embedding(torch.from_numpy(x))  # official-style loop over encoder_blocks
        handle.remove()
        ours_last = model.run_blocks(model.embed(torch.from_numpy(x)), 0, model.n_blocks)
    assert ours_last.shape == (6, 1 + 7 * 13, 32)
    torch.testing.assert_close(ours_last, captured["o"], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours_last, ref_last, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours_out, ref_out, atol=1e-5, rtol=0)


def test_cls_fusion_mixes_variables_only_through_cls() -> None:
    """Changing variable 0's input changes variable 1's CLS token (fusion) but not its patch tokens in layer 0."""
    model = tiny(depth=1)
    x = torch.randn(1, 3, 65)
    y = x.clone()
    y[0, 0] += 1.0
    with torch.no_grad():
        hx, hy = (model.run_blocks(model.embed(v), 0, 1) for v in (x, y))
    assert not torch.allclose(hx[1, 0], hy[1, 0])
    torch.testing.assert_close(hx[1, 1:], hy[1, 1:], atol=0, rtol=0)
    assert [blk.cls_fusion is not None for blk in tiny(depth=4).backbone.encoder_blocks] == [True, False, True, False]


def test_to_btd_from_btd_round_trip_and_order() -> None:
    model = tiny()
    h = torch.randn(2 * 3, 92, 32)
    btd = model.to_btd(h)
    assert btd.shape == (2, 3 * 92, 32)
    assert torch.equal(btd[1, 2 * 92 + 5], h[1 * 3 + 2, 5])
    assert torch.equal(model.from_btd(btd), h)
    assert torch.equal(model.to_btd(model.from_btd(btd)), btd)


def test_embed_is_deterministic_and_draws_no_random_numbers() -> None:
    model = tiny()
    x = torch.randn(1, 3, 65)
    state = torch.get_rng_state()
    with torch.no_grad():
        a, b = model.embed(x), model.embed(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)


def test_sincos_table_matches_mae_formula() -> None:
    table = sincos_2d(8, (2, 3))
    assert table.shape == (7, 8) and not table[0].any()
    h, w = 1, 2  # token index 1 + h·3 + w; first half encodes w, second half h (MAE's meshgrid(w, h))
    omega = 1.0 / 10000 ** (np.arange(2) / 2.0)
    ref = np.concatenate([np.sin(w * omega), np.cos(w * omega), np.sin(h * omega), np.cos(h * omega)])
    assert np.allclose(table[1 + h * 3 + w], ref)


def real_on_meta() -> NormWear:
    with torch.device("meta"):
        model = normwear()  # FOG EMG: 3 variables × 3 s at 130 Hz
    return model.to("meta")


def test_parameter_counts_and_names_on_meta() -> None:
    model = real_on_meta()
    params = dict(model.named_parameters())
    decoder = sum(p.numel() for k, p in params.items() if k.removeprefix("backbone.").startswith(DECODER_KEYS))
    assert sum(p.numel() for p in params.values()) == 136_115_400
    assert decoder == 7_996_872  # 7,710,152 trainable + 286,720 fixed decoder_pos_embed
    assert sum(p.numel() for p in params.values() if not p.requires_grad) == 716_800  # the two sin-cos tables
    keys = set(model.state_dict())
    for k in ("backbone.patch_embed.proj.weight", "backbone.cls_token", "backbone.pos_embed",
              "backbone.encoder_blocks.0.variate_encoder.attn.qkv.bias",
              "backbone.encoder_blocks.10.cls_fusion.mlp.fc2.weight", "backbone.norm.weight",
              "backbone.decoder_blocks.1.attn.proj.weight", "backbone.spatial_recon.norm.running_var",
              "backbone.temporal_recon.weight", "backbone.mask_token", "backbone.decoder_norm.bias"):
        assert k in keys, k
    assert not any(k.startswith("backbone.encoder_blocks.11.cls_fusion") for k in keys)
    assert tuple(params["backbone.patch_embed.proj.weight"].shape) == (768, 3, 9, 5)
    assert tuple(params["backbone.pos_embed"].shape) == (1, 560, 768)


def test_probe_fog_dims_on_meta() -> None:
    model = real_on_meta()
    dims = model.probe()
    assert model.grid_hw == (43, 13) and model.n_tokens == 560
    assert len(dims) == 12 and {(d.in_tokens, d.in_dim, d.out_tokens, d.out_dim) for d in dims} == {(1680, 768,
                                                                                                       1680, 768)}
    assert model.position_table() is model.backbone.pos_embed  # pre-training grid: no resize


@pytest.mark.slow
def test_real_config_run_blocks_equals_official_forward() -> None:
    torch.manual_seed(0)
    model = normwear().eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 390)).astype(np.float32)
    with torch.no_grad():
        ref_last, _ = official_signal_embedding(model, x)
        ours = model.run_blocks(model.embed(torch.from_numpy(x)), 0, model.n_blocks)
    torch.testing.assert_close(ours, ref_last, atol=1e-4, rtol=1e-4)


def official_flat_state(model: NormWear) -> dict[str, torch.Tensor]:
    """The released checkpoint: a flat ``NormWear`` state dict (no ``backbone.`` prefix)."""
    return {k: v.clone() for k, v in model.backbone.state_dict().items()}


def test_official_checkpoint_loads_strictly(tmp_path) -> None:
    src, dst = tiny(seed=1), tiny(seed=2)
    x = torch.randn(2, 3, 65)
    assert not torch.allclose(src(x), dst(x))
    torch.save(official_flat_state(src), tmp_path / "normwear_last_checkpoint-15470-correct.pth")
    load = get_backbone_entry("normwear").load_weights
    load(dst, tmp_path / "normwear_last_checkpoint-15470-correct.pth")
    torch.testing.assert_close(dst(x), src(x), atol=0, rtol=0)
    # a NormWearModel state dict (backbone.*) behind DataParallel's module. loads as well
    torch.save({"model": {f"module.backbone.{k}": v for k, v in official_flat_state(src).items()}}, tmp_path / "m.pth")
    load(tiny(seed=3), tmp_path / "m.pth")
    # without the decoder, its tensors are dropped by name
    no_dec = tiny(seed=4, decoder=False)
    load(no_dec, tmp_path / "normwear_last_checkpoint-15470-correct.pth")
    torch.testing.assert_close(no_dec(x), src(x), atol=0, rtol=0)


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.pop("encoder_blocks.0.cls_fusion.norm1.weight"), "missing keys: backbone.encoder_blocks.0.cls_fusion"),
    (lambda s: s.__setitem__("encoder_blocks.1.cls_fusion.norm1.weight", torch.ones(32)),
     "unexpected keys: backbone.encoder_blocks.1.cls_fusion.norm1.weight"),
    (lambda s: s.__setitem__("pos_embed", torch.zeros(1, 92, 32)), "backbone.pos_embed: checkpoint (1, 92, 32)"),
], ids=["missing", "extra", "mis-shaped"])
def test_bad_checkpoints_raise_naming_keys(tmp_path, edit, needle: str) -> None:
    model = tiny()
    state = official_flat_state(model)
    edit(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatch) as info:
        get_backbone_entry("normwear").load_weights(model, tmp_path / "bad.pth")
    assert needle in str(info.value)


def test_full_pickle_refused_without_trust(tmp_path) -> None:
    model = tiny()
    torch.save({"model": official_flat_state(model), "extra": NotATensor()}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="trust") as info:
        get_backbone_entry("normwear").load_weights(model, tmp_path / "pickled.pth")
    assert not isinstance(info.value, CheckpointMismatch)
    get_backbone_entry("normwear").load_weights(model, tmp_path / "pickled.pth", trust_pickle=True)


def test_registry_tiny_entry() -> None:
    entry = get_backbone_entry("normwear")
    model = get_backbone("normwear", **entry.tiny_kwargs)
    assert model.probe()[0].in_tokens == 3 * (1 + 7 * 13)


def test_exports_to_onnx_with_cwt_inside(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = tiny(seed=5, depth=2)
    x = torch.randn(2, 3, 65)
    path = tmp_path / "normwear.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert np.abs(y - model(x).detach().numpy()).max() < 1e-4
