"""Backends (chosen by suffix, NumPy-only import) and the bench JSON, including the PyTorch reference path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from fixtures_export import calib_windows, check_windows, make_chain

from edgebridge.bridge.compose import hook_injected_forward
from edgebridge.export.api import export_bundle
from edgebridge.export.onnx import export_onnx
from edgebridge.runtime.backends import Backend, BackendError, OrtBackend, TorchBackend, open_backend


@pytest.fixture(scope="module")
def chain_onnx(tmp_path_factory):
    model, config = make_chain("tiny_transformer", "tiny_cnn")
    path = tmp_path_factory.mktemp("be") / "m.onnx"
    export_onnx(model, config.spec_new, path, n_classes=3, exporter="torchscript")
    return model, config, path


def test_backends_module_imports_without_torch_or_onnx():
    # a meta-path blocker, not sys.modules[...] = None (SciPy >= 1.17 trips over a None torch entry)
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'onnx', 'onnxruntime'):\n"
            "            raise ImportError(name + ' blocked')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import edgebridge.runtime.backends, edgebridge.export.bundle, edgebridge.export.tensorrt\n"
            "import edgebridge.calibration, edgebridge.export\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-800:]


def test_ort_backend_matches_torch_and_checks_input(chain_onnx):
    model, _, path = chain_onnx
    backend = open_backend(path, threads=1, spinning=False)
    assert isinstance(backend, OrtBackend) and isinstance(backend, Backend)
    assert backend.provider == "CPUExecutionProvider" and backend.input_shape == (None, 1, 200)
    x = calib_windows(5)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = backend.run(x.astype(np.float64))  # cast to float32 inside
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-3)
    with pytest.raises(BackendError, match=r"shape \('B', 1, 200\), got \(5, 1, 199\)"):
        backend.run(x[:, :, :199])
    with pytest.raises(BackendError, match="unknown provider 'npu'"):
        OrtBackend(path, provider="npu")
    with pytest.raises(BackendError, match="no CUDAExecutionProvider"):
        OrtBackend(path, provider="cuda")  # CPU-only onnxruntime here: refuse instead of silently using CPU


def test_suffix_registry(chain_onnx, tmp_path):
    with pytest.raises(KeyError, match="unknown backend file suffix '.tflite'"):
        open_backend(tmp_path / "m.tflite")
    with pytest.raises(BackendError, match="no ONNX file"):
        open_backend(tmp_path / "missing.onnx")


def test_torch_backend_module_and_pt2(chain_onnx, tmp_path):
    model, config, _ = chain_onnx
    x = calib_windows(3)
    ref = TorchBackend(model).run(x)
    ep = torch.export.export(model, (torch.from_numpy(x),))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    loaded = open_backend(tmp_path / "m.pt2")
    assert isinstance(loaded, TorchBackend)
    np.testing.assert_allclose(loaded.run(x), ref, atol=1e-5)


def test_trt_backend_without_tensorrt_says_so(tmp_path):
    (tmp_path / "m.engine").write_bytes(b"not an engine")
    with pytest.raises(RuntimeError, match="TensorRT"):
        open_backend(tmp_path / "m.engine")


def test_bench_bundle_json_and_reference(tmp_path):
    from edgebridge.bench import bench_bundle
    from edgebridge.calibration import CalibrationReader

    model, config = make_chain("tiny_cnn", "tiny_transformer", seed=5)
    check = check_windows(model, n=12)
    path = export_bundle(model, config, tmp_path / "b", check, precisions=("fp32", "int8"), exporter="torchscript",
                         calib=CalibrationReader(calib_windows(24), config.spec_new))
    result = bench_bundle(path, batch_sizes=(1, 4), providers=["cpu"], threads=1, iters=5,
                          reference_model=model)
    for p in ("fp32", "int8"):
        r = result[p]
        assert r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] and 0 <= r["balanced_accuracy"] <= 1
        assert r["size_bytes"] == (path / f"model.{p}.onnx").stat().st_size
        assert set(r["providers"]["CPUExecutionProvider"]) == {"1", "4", "balanced_accuracy"}
    assert result["fp32"]["balanced_accuracy"] == 1.0  # labels are the fp32 argmax
    ref = result["reference"]
    assert ref["p50_ms"] > 0 and "hook_injected_forward" in ref["path"]
    with torch.no_grad():  # the reference path (both full models + hooks) agrees with the sliced chain
        hooked = hook_injected_forward(model.prefix.backbone, model.prefix.in_layer, model.bridge,
                                       model.suffix.backbone, model.suffix.out_layer, model.head,
                                       torch.from_numpy(check.x_new), torch.from_numpy(check.x_old))
    assert ref["balanced_accuracy"] == pytest.approx(
        float(np.mean([np.mean(hooked.argmax(1).numpy()[check.labels == k] == k) for k in np.unique(check.labels)])))
    skipped = bench_bundle(path, batch_sizes=(1,), precisions=("fp32",), providers=["cpu"], iters=2)
    assert "skipped" in skipped["reference"]  # no run dir recorded, no model given: say so, no fake figure
