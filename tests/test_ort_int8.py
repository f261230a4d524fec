"""The int8 graph's activations moved to uint8 for ORT's x86 kernels: exact, complete, and really fused."""

from __future__ import annotations

import platform

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fixtures_export import calib_windows, make_chain

from edgebridge.backbones.tiny import default_spec
from edgebridge.calibration import CalibrationReader
from edgebridge.export.onnx import export_onnx
from edgebridge.export.quantize import quantize_int8
from edgebridge.runtime.backends import OrtBackend
from edgebridge.runtime.ort_int8 import X86_MACHINES, to_uint8_activations, wants_uint8_activations

SPEC = default_spec("ppg")
ON_X86 = platform.machine().lower() in X86_MACHINES


@pytest.fixture(scope="module")
def int8_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("u8")
    chain, config = make_chain("tiny_cnn", "tiny_transformer")
    export_onnx(chain, config.spec_new, d / "chain.onnx", n_classes=3)
    reader = CalibrationReader(calib_windows(32), SPEC, {"source": "test"})
    quantize_int8(d / "chain.onnx", d / "chain.int8.onnx", reader, tool="ort")
    return d / "chain.int8.onnx"


def _run(model_or_path, x: np.ndarray, level: str, optimized_path=None) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    src = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    session = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_rewrite_is_exact_and_keeps_conv_matmul_weights_int8(int8_file):
    original = onnx.load(str(int8_file))
    before = {t.name: onnx.numpy_helper.to_array(t) for t in original.graph.initializer}
    model = onnx.load(str(int8_file))
    changed = to_uint8_activations(model)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    readers = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, set()).add(n.op_type)
    q_nodes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq_nodes = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    act_dq = [n for n in dq_nodes if n.input[0] not in inits]
    weight_dq = [n for n in dq_nodes if n.input[0] in inits and readers[n.output[0]] & {"Conv", "MatMul", "Gemm"}]
    const_dq = [n for n in dq_nodes if n.input[0] in inits and n not in weight_dq
                and inits[n.input[0]].dtype != np.int32]
    assert const_dq  # the tiny transformer's Linear layers export as MatMul + a bias Add the quantizer made int8
    assert changed == len(q_nodes) + len(act_dq) + len(const_dq) > 0
    for node in q_nodes + act_dq:  # every activation pair: uint8, zero-point 128 (was int8, 0)
        assert inits[node.input[2]].dtype == np.uint8 and np.all(inits[node.input[2]] == 128), node.name
    assert weight_dq and all(inits[n.input[0]].dtype == np.int8 for n in weight_dq)  # the S8 of U8S8
    for node in const_dq:  # element-wise constants (bias Adds): the same values shifted by 128
        orig_name = node.input[0].removesuffix("__u8")
        assert inits[node.input[0]].dtype == np.uint8
        np.testing.assert_array_equal(inits[node.input[0]].astype(int), before[orig_name].astype(int) + 128)
    onnx.checker.check_model(model, full_check=True)
    x = calib_windows(16, seed=5)
    # with every optimisation off ORT evaluates the QDQ graph literally: the two graphs must agree bit for bit
    np.testing.assert_array_equal(_run(model, x, "ORT_DISABLE_ALL"), _run(original, x, "ORT_DISABLE_ALL"))


@pytest.mark.skipif(not ON_X86, reason="ORT's U8S8 integer kernels are the x86 path; ARM runs int8 natively")
def test_every_weighted_group_fuses_to_an_integer_kernel(int8_file, tmp_path):
    """The point of the rewrite: no float Conv/MatMul left that dequantizes its int8 weight on every run."""
    model = onnx.load(str(int8_file))
    to_uint8_activations(model)
    x = calib_windows(4, seed=6)
    leftovers = {}
    for name, graph in (("as exported", onnx.load(str(int8_file))), ("uint8 activations", model)):
        out = tmp_path / f"{name.replace(' ', '_')}.onnx"
        _run(graph, x, "ORT_ENABLE_ALL", optimized_path=out)
        opt = onnx.load(str(out))
        inits = {t.name for t in opt.graph.initializer}
        weight_dq = {n.output[0] for n in opt.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
        leftovers[name] = [n.name for n in opt.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")
                           and any(i in weight_dq for i in n.input)]
        if name == "uint8 activations":
            assert any(n.op_type in ("QLinearConv", "QLinearMatMul") for n in opt.graph.node)
    assert leftovers["uint8 activations"] == []
    assert leftovers["as exported"], "ORT now fuses the int8 graph by itself; the rewrite may no longer be needed"


def test_backend_applies_it_only_where_it_helps(int8_file):
    assert wants_uint8_activations("int8", ["CPUExecutionProvider"], "x86_64")
    assert wants_uint8_activations("int8", ["CPUExecutionProvider"], "AMD64")
    assert not wants_uint8_activations("int8", ["CPUExecutionProvider"], "aarch64")
    assert not wants_uint8_activations("int8", ["CUDAExecutionProvider", "CPUExecutionProvider"], "x86_64")
    assert not wants_uint8_activations("fp32", ["CPUExecutionProvider"], "x86_64")
    x = calib_windows(8, seed=7)
    auto, off = OrtBackend(int8_file), OrtBackend(int8_file, uint8_activations=False)
    assert auto.uint8_activations is ON_X86 and not off.uint8_activations
    reference = _run(onnx.load(str(int8_file)), x, "ORT_DISABLE_ALL")
    # fused integer kernels requantize with their own rounding: close to the literal QDQ evaluation, not equal
    np.testing.assert_allclose(auto.run(x), reference, atol=0.05)
    assert (auto.run(x).argmax(1) == reference.argmax(1)).mean() >= 0.875
