"""ONNX export: dynamic batch really dynamic, checked graph, metadata inside, parity with PyTorch, format table."""

from __future__ import annotations

import inspect

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from fixtures_export import CLASSES, make_chain

from edgebridge.backbones.base import ClassifierHead
from edgebridge.backbones.registry import get_backbone, get_backbone_entry, list_backbones
from edgebridge.bridge.compose import BridgedModel
from edgebridge.bridge.layers import ProtoLowRankBridge
from edgebridge.export.formats import DEFAULT_OPSET, ExportArgError, validate_args, validate_precisions
from edgebridge.export.onnx import ExportError, check_io, export_onnx, read_metadata
from edgebridge.export.parity import check_parity, compare

CHAINS = [("tiny_cnn", "tiny_transformer"), ("tiny_transformer", "tiny_cnn")]


def _torch(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize(("new", "old"), CHAINS)
def test_dynamo_export_dynamic_batch_and_parity(tmp_path, new, old):
    model, config = make_chain(new, old)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "m.onnx"
    info = export_onnx(model, config.spec_new, path, n_classes=3,
                       metadata={"spec": config.spec_new.to_dict(), "class_names": list(CLASSES)})
    assert info.input_shape == (None, 1, 200) and info.output_shape == (None, 3)
    assert info.exporter == "dynamo" and info.opset == DEFAULT_OPSET == 20
    assert not list(tmp_path.glob("*.data"))  # single file
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic, not 2
    meta = read_metadata(path)
    assert meta["spec"] == config.spec_new.to_dict() and meta["class_names"] == list(CLASSES)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in (1, 2, 7):  # 1 and 7 differ from the export example's 2
        x = rng.standard_normal((batch, 1, 200)).astype(np.float32)
        out = sess.run(None, {"signal": x})[0]
        np.testing.assert_allclose(out, _torch(model, x), atol=1e-4, rtol=1e-3)
        check_parity("fp32", compare(_torch(model, x), out))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the caller's model is untouched


def test_torchscript_fallback_and_training_model_untouched(tmp_path):
    model, config = make_chain()
    model.train()  # a careless caller: export must still trace eval behaviour, and leave the caller's module alone
    x = np.random.default_rng(1).standard_normal((5, 1, 200)).astype(np.float32)
    info = export_onnx(model, config.spec_new, tmp_path / "ts.onnx", n_classes=3, exporter="torchscript")
    assert info.exporter == "torchscript" and info.input_shape == (None, 1, 200)
    assert model.training
    out = ort.InferenceSession(str(tmp_path / "ts.onnx")).run(None, {"signal": x})[0]
    np.testing.assert_allclose(out, _torch(model.eval(), x), atol=1e-4, rtol=1e-3)


def test_fixed_batch_dim_is_caught(tmp_path):
    model, config = make_chain()
    export_onnx(model, config.spec_new, tmp_path / "m.onnx", n_classes=3, exporter="torchscript")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    dim.dim_value = 1  # what a batch-1 example silently produces
    with pytest.raises(ExportError, match="batch"):
        check_io(proto, (1, 200), 3)
    with pytest.raises(ExportError, match="output"):
        check_io(onnx.load(str(tmp_path / "m.onnx")), (1, 200), 4)


def test_parity_report_against_independent_numbers():
    ref = np.array([[1.0, 0.0], [0.0, 2.0]])
    test = np.array([[1.0, 0.5], [0.0, 2.0]])
    r = compare(ref, test)
    assert r.max_abs == pytest.approx(0.5) and r.mean_abs == pytest.approx(0.125)
    assert r.cosine == pytest.approx(5.0 / (np.sqrt(5.0) * np.sqrt(5.25)))
    assert r.cosine_min_row == pytest.approx(1 / np.sqrt(1.25))
    assert r.argmax_agreement == 1.0
    with pytest.raises(AssertionError, match="fp32 ONNX differs"):
        check_parity("fp32", r)
    with pytest.raises(AssertionError, match="fp16 ONNX logits have cosine"):
        check_parity("fp16", compare(ref, np.array([[1.0, 0.0], [2.0, 0.0]])))


def test_format_table_validation():
    assert validate_args("onnx", {"opset": 17, "precisions": ("fp32", "int8")})["opset"] == 17
    with pytest.raises(ExportArgError, match="do not apply to format 'onnx'"):
        validate_args("onnx", {"workspace_mib": 512})
    assert validate_args("tensorrt", {"workspace_mib": 512})
    with pytest.raises(KeyError, match="did you mean 'onnx'"):
        validate_args("onnxx", {})
    with pytest.raises(ExportArgError, match="exporter"):
        validate_args("onnx", {"exporter": "jit"})
    with pytest.raises(ExportArgError, match="opset"):
        validate_args("onnx", {"opset": 9})
    with pytest.raises(ExportArgError, match="must include 'fp32'"):
        validate_precisions(("int8",))
    with pytest.raises(KeyError, match="unknown precision 'int4'"):
        validate_precisions(("fp32", "int4"))
    assert validate_precisions(("int8", "fp32")) == ("fp32", "int8")


def _needs_args(name: str) -> bool:
    params = inspect.signature(get_backbone_entry(name).factory).parameters.values()
    return any(p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               for p in params)


def _self_bridge(name: str, kwargs: dict) -> BridgedModel:
    """The adapter bridged to itself (middle block → middle block): every adapter op goes through the exporter."""
    torch.manual_seed(0)
    new, old = get_backbone(name, **kwargs).freeze(), get_backbone(name, **kwargs).freeze()
    m, l = new.n_blocks // 2, old.n_blocks // 2
    target = old.probe()[l]
    bridge = ProtoLowRankBridge(new.probe()[m].out_dim, target.in_dim, target.in_tokens, 4, 8)
    torch.nn.init.normal_(bridge.B, std=0.1)
    return BridgedModel(new, m, bridge, old, l, ClassifierHead(old.probe()[-1].out_dim, CLASSES)).eval()


@pytest.mark.slow
@pytest.mark.parametrize("size", ["tiny", "full"])
@pytest.mark.parametrize("name", [n for n in list_backbones() if not n.startswith("tiny")])
def test_every_registered_adapter_exports(tmp_path, name, size):
    entry = get_backbone_entry(name)
    kwargs = dict(entry.tiny_kwargs) if size == "tiny" else {}
    if _needs_args(name) and size == "full":
        pytest.skip(f"{name} has no default architecture (it wraps a user module)")
    model = _self_bridge(name, kwargs)
    spec = model.prefix.backbone.spec
    info = export_onnx(model, spec, tmp_path / f"{name}.onnx", n_classes=3)
    assert info.input_shape == (None, *spec.input_shape)
    x = np.random.default_rng(0).standard_normal((3, *spec.input_shape)).astype(np.float32)
    out = ort.InferenceSession(str(tmp_path / f"{name}.onnx")).run(None, {"signal": x})[0]
    check_parity("fp32", compare(_torch(model, x), out))
