"""fp16 (never crashes ORT CPU), int8 QDQ (symmetric, per-channel, real calibration only), calibration sampling."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import numpy as np
import onnx
import pytest
import torch
from fixtures_export import calib_windows, make_chain
from torch import nn

from edgebridge.backbones.tiny import default_spec
from edgebridge.calibration import CalibrationReader, stratified_indices
from edgebridge.export import quantize
from edgebridge.export.onnx import export_onnx
from edgebridge.export.parity import FP16_MIN_COSINE, compare
from edgebridge.export.quantize import QuantizationError, default_nodes_to_exclude, quantize_int8, to_fp16
from edgebridge.runtime.backends import OrtBackend

SPEC = default_spec("ppg")


class AttnNet(nn.Module):
    """Conv stem + pre-norm nn.TransformerEncoderLayer + head: its fp16 graph segfaults ORT 1.32 CPU at ENABLE_ALL."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(1, 16, 10, stride=10)
        self.enc = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, norm_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(self.stem(x).transpose(1, 2)).mean(1))


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("q")
    torch.manual_seed(0)
    attn = AttnNet().eval()
    export_onnx(attn, SPEC, d / "attn.onnx", n_classes=3)
    to_fp16(d / "attn.onnx", d / "attn.fp16.onnx")
    chain, config = make_chain("tiny_cnn", "tiny_transformer")
    export_onnx(chain, config.spec_new, d / "chain.onnx", n_classes=3, exporter="torchscript")
    return d, attn, chain


def _open_in_child(path, level: str | None) -> subprocess.CompletedProcess:
    """Create an ORT CPU session in a child process: a segfault must not take pytest down with it."""
    code = textwrap.dedent(f"""
        import numpy as np, onnxruntime as ort
        from edgebridge.runtime.backends import OrtBackend
        level = {level!r}
        if level is None:
            out = OrtBackend({str(path)!r}).run(np.ones((2, 1, 200), np.float32))
        else:
            so = ort.SessionOptions()
            so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
            s = ort.InferenceSession({str(path)!r}, so, providers=["CPUExecutionProvider"])
            out = s.run(None, {{"signal": np.ones((2, 1, 200), np.float32)}})[0]
        print(out.shape)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_fp16_cpu_session_never_crashes(onnx_files):
    d, attn, _ = onnx_files
    proc = _open_in_child(d / "attn.fp16.onnx", None)  # OrtBackend reads the precision from the file's metadata
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "(2, 3)" in proc.stdout
    x = np.random.default_rng(0).standard_normal((8, 1, 200)).astype(np.float32)
    backend = OrtBackend(d / "attn.fp16.onnx")
    assert backend.precision == "fp16"
    with torch.no_grad():
        ref = attn(torch.from_numpy(x)).numpy()
    assert compare(ref, backend.run(x)).cosine >= FP16_MIN_COSINE
    model = onnx.load(str(d / "attn.fp16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # IO kept fp32
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


def test_default_ort_level_is_the_crash_we_avoid(onnx_files):
    """Documents why OrtBackend caps the level: if ORT fixes the crash, this fails and the cap can go."""
    proc = _open_in_child(onnx_files[0] / "attn.fp16.onnx", "ORT_ENABLE_ALL")
    assert proc.returncode != 0  # -11 (SIGSEGV) with onnxruntime 1.32


def test_fp16_torchscript_casts_are_retargeted(onnx_files, tmp_path):
    d, _, chain = onnx_files
    to_fp16(d / "chain.onnx", tmp_path / "c16.onnx")
    x = calib_windows(8)
    with torch.no_grad():
        ref = chain(torch.from_numpy(x)).numpy()
    assert compare(ref, OrtBackend(tmp_path / "c16.onnx").run(x)).cosine >= FP16_MIN_COSINE


def test_int8_refuses_without_calibration(onnx_files, tmp_path):
    with pytest.raises(QuantizationError, match="random scales"):
        quantize_int8(onnx_files[0] / "chain.onnx", tmp_path / "q.onnx", None)
    assert not (tmp_path / "q.onnx").exists()
    with pytest.raises(QuantizationError, match="unknown calibration method"):
        quantize_int8(onnx_files[0] / "chain.onnx", tmp_path / "q.onnx", CalibrationReader(calib_windows(4), SPEC),
                      method="mse")


def test_int8_qdq_symmetric_and_keeps_stem_norm_head_float(onnx_files, tmp_path):
    d, _, chain = onnx_files
    reader = CalibrationReader(calib_windows(32), SPEC, {"source": "test"})
    prov = quantize_int8(d / "chain.onnx", tmp_path / "q.onnx", reader, tool="ort")
    model = onnx.load(str(tmp_path / "q.onnx"))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(np.all(z == 0) for z in zero_points)  # symmetric (TensorRT needs zero points = 0)
    per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                   and any(a.name == "axis" for a in n.attribute) and inits.get(n.input[1], np.zeros(1)).size > 1]
    assert per_channel  # weights quantized per output channel
    kept = prov["kept_float"]
    assert len(kept["stem"]) == 1 and len(kept["head"]) == 1 and len(kept["norm_softmax"]) == 6
    by_name = {n.name: n for n in model.graph.node}
    producers = {o: n for n in model.graph.node for o in n.output}

    def weights_quantized(node) -> bool:
        return any(i in producers and producers[i].op_type == "DequantizeLinear" for i in node.input[1:])

    for name in kept["stem"] + kept["head"] + kept["norm_softmax"]:  # kept nodes read float weights
        node = by_name[name]
        assert not weights_quantized(node), name
        assert all(i in inits and inits[i].dtype == np.float32 for i in node.input[1:] if i), name
    others = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1
              and n.input[1] in producers and n.name not in kept["stem"] + kept["head"]
              and producers[n.input[1]].input[0] in inits]  # nodes with a weight (an initializer behind a DQ)
    assert others and all(weights_quantized(n) for n in others)  # the rest really is int8
    assert prov["calibration"]["source"] == "test" and prov["calibration"]["n_windows"] == 32
    x = calib_windows(16, seed=9)
    with torch.no_grad():
        ref = chain(torch.from_numpy(x)).numpy()
    assert compare(ref, OrtBackend(tmp_path / "q.onnx").run(x)).argmax_agreement >= 0.9


def test_exclusion_finds_stem_and_head_from_graph_only(onnx_files):
    model = onnx.load(str(onnx_files[0] / "chain.onnx"))
    groups = default_nodes_to_exclude(model)
    by_name = {n.name: n for n in model.graph.node}
    stem, head = by_name[groups["stem"][0]], by_name[groups["head"][0]]
    assert stem.op_type == "Conv" and "signal" in stem.input  # first conv reads the graph input
    assert head.op_type == "Gemm" and "logits" in head.output  # last Gemm writes the output
    assert {by_name[n].op_type for n in groups["norm_softmax"]} == {"LayerNormalization", "Softmax"}


def test_modelopt_path_gets_real_calibration(monkeypatch, onnx_files, tmp_path):
    calls = {}

    def fake_quantize(**kwargs):
        calls.update(kwargs)
        onnx.save(onnx.load(kwargs["onnx_path"]), kwargs["output_path"])

    pkg = types.ModuleType("modelopt.onnx.quantization")
    pkg.quantize = fake_quantize
    monkeypatch.setitem(sys.modules, "modelopt.onnx.quantization", pkg)
    reader = CalibrationReader(calib_windows(8), SPEC)
    prov = quantize_int8(onnx_files[0] / "chain.onnx", tmp_path / "m.onnx", reader, tool="modelopt")
    assert prov["tool"] == "modelopt" and calls["quantize_mode"] == "int8"
    np.testing.assert_array_equal(calls["calibration_data"]["signal"], reader.as_array())
    assert calls["calibration_method"] == "max" and calls["nodes_to_exclude"]
    with pytest.raises(QuantizationError, match="unknown quantization tool"):
        quantize.pick_tool("tensorrt")


def test_stratified_indices_cover_every_cell():
    subjects = np.array(["a"] * 50 + ["b"] * 6 + ["c"] * 4)
    labels = np.array([0] * 40 + [1] * 10 + [0, 1, 2] * 2 + [2] * 4)
    idx = stratified_indices(subjects, labels, 12, seed=0)
    cells = {(subjects[i], labels[i]) for i in idx}
    assert cells == set(zip(subjects, labels, strict=True))  # all 6 (subject, class) cells
    assert len(idx) == 12 and len(set(idx)) == 12
    np.testing.assert_array_equal(idx, stratified_indices(subjects[::-1][::-1], labels, 12, seed=0))
    assert len(stratified_indices(subjects, labels, 1000)) == 60


def test_reader_protocol_and_checks():
    x = calib_windows(5)
    reader = CalibrationReader(x, SPEC, batch_size=2)
    batches = []
    while (b := reader.get_next()) is not None:
        batches.append(b["signal"].shape[0])
    assert batches == [2, 2, 1]
    reader.rewind()
    assert reader.get_next()["signal"].shape == (2, 1, 200)
    with pytest.raises(ValueError, match="must be \\(N, 1, 200\\)"):
        CalibrationReader(x[:, :, :100], SPEC)
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        CalibrationReader(bad, SPEC)
    raw = CalibrationReader.from_raw(list(np.repeat(x[:, :, :, None], 2, axis=3).reshape(5, 1, 400)), 100.0, SPEC)
    assert raw.provenance["source"] == "raw_windows" and raw.windows.shape == (5, 1, 200)
