"""Every registered name has a test case (braindecode's completeness check): registering a backbone, loss,
loader, export format, frame parser or source scheme without one fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgebridge.backbones import get_backbone_entry, list_backbones

TESTS = Path(__file__).resolve().parent

# name -> test file that exercises it (the file must exist and mention the name)
LOADER_TESTS = {"synthetic": "test_synthetic.py", "wesad": "test_data_wesad.py", "dalia": "test_data_dalia.py",
                "isruc": "test_data_isruc.py", "fog": "test_data_fog.py", "sleepedf": "test_data_sleepedf.py",
                "generic": "test_data_generic.py"}
FORMAT_TESTS = {"onnx": "test_export_onnx.py", "tensorrt": "test_tensorrt_layer.py"}
PARSER_TESTS = {name: "test_devices_serial.py" for name in ("csv_line", "binary", "int16_le", "int32_le",
                                                              "float32_le")}
SOURCE_TESTS = {"replay": "test_runtime_buffer.py", "file": "test_runtime_buffer.py",
                "serial": "test_devices_serial.py", "brainflow": "test_devices_brainflow.py",
                "lsl": "test_devices_lsl.py"}
LOSS_TESTS = {"cosine", "mse"}


def _registries():
    from edgebridge.data.recordings import LOADERS, get_loader
    from edgebridge.devices import PARSERS, SOURCES
    from edgebridge.export.formats import FORMATS

    get_loader("synthetic")  # imports every built-in loader
    return {"loader": (LOADERS, LOADER_TESTS), "export format": (FORMATS, FORMAT_TESTS),
            "frame parser": (PARSERS, PARSER_TESTS), "source scheme": (SOURCES, SOURCE_TESTS)}


@pytest.mark.parametrize("kind", ["loader", "export format", "frame parser", "source scheme"])
def test_every_registered_name_has_a_test_file(kind: str) -> None:
    registry, cases = _registries()[kind]
    missing = [n for n in registry.names() if n not in cases]
    assert not missing, f"registered {kind}(s) without a test case: {missing}"
    for name in registry.names():
        text = (TESTS / cases[name]).read_text()
        assert name in text, f"{cases[name]} does not exercise {kind} '{name}'"


def test_every_loss_is_zero_on_identical_inputs() -> None:
    from edgebridge.train import LOSSES

    assert set(LOSSES.names()) == LOSS_TESTS
    x = torch.randn(4, 3, 5)
    for name in LOSSES.names():
        assert float(LOSSES.get(name)(x, x.clone())) == pytest.approx(0.0, abs=1e-6)
        assert float(LOSSES.get(name)(x, -x)) > 0.5


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_builds_from_its_tiny_config(name: str) -> None:
    entry = get_backbone_entry(name)
    torch.manual_seed(0)
    model = entry.factory(**entry.tiny_kwargs).freeze()
    dims = model.probe()
    assert len(dims) == model.n_blocks >= 1
    x = torch.randn(2, *model.spec.input_shape)
    with torch.no_grad():
        last = model(x)
        assert torch.equal(model.run_blocks(model.embed(x), 0, model.n_blocks), last)
        assert model.pool(last).shape == (2, dims[-1].out_dim)
        assert torch.equal(model.from_btd(model.to_btd(last)), last)
    assert entry.modality and entry.licence and entry.description


def test_generic_adapter_from_a_config_reference() -> None:
    """A user's nn.Module becomes a backbone by 'package.module:factory' + attribute paths, no adapter code."""
    from edgebridge.backbones.loading import build_backbone
    from edgebridge.backbones.tiny import default_spec

    torch.manual_seed(0)
    backbone = build_backbone("generic", default_spec("ecg"), {
        "factory": "edgebridge.backbones.generic:example_module", "blocks_path": "layers", "stem_path": "stem",
        "head_path": "head", "layout": "BCL"})
    user = backbone.model
    x = torch.randn(3, 1, 200)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), user.layers(user.stem(x)))
        torch.testing.assert_close(backbone.head(backbone.readout(backbone(x))), user(x))
    assert [d.in_dim for d in backbone.probe()] == [8, 8, 8]
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        build_backbone("generic", None, {"factory": "edgebridge.backbones.generic:nope", "blocks_path": "layers"})
    with pytest.raises(ValueError, match="package.module:factory"):
        build_backbone("generic", None, {"factory": "edgebridge.backbones.generic.example_module",
                                         "blocks_path": "layers"})


def test_feature_cache_key_changes_with_weights_windows_and_spec(tmp_path: Path) -> None:
    from helpers import tiny_pair

    from edgebridge.data.synthetic import SyntheticConfig, make_dataset
    from edgebridge.data.windows import PairedWindows
    from edgebridge.features import cache_key

    new, old, head = tiny_pair()
    recs = make_dataset(SyntheticConfig(n_subjects=2, minutes_per_condition=0.5, fs_ecg_hz=100.0, fs_ppg_hz=50.0))
    windows = PairedWindows(recs, new.spec, old.spec)
    key = cache_key(new, old, head, windows)
    assert cache_key(new, old, head, PairedWindows(recs, new.spec, old.spec)) == key
    assert cache_key(new, old, head, PairedWindows(recs[:1], new.spec, old.spec)) != key
    spec2 = new.spec.replace(bandpass_hz=[0.5, 5.0])
    assert cache_key(new, old, head, PairedWindows(recs, spec2, old.spec)) != key
    with torch.no_grad():
        old.block_list[0].conv1.weight[0, 0, 0] += 1e-3
    assert cache_key(new, old, head, windows) != key
