"""Everything around TensorRT that can run without it: cache keys, profiles, trtexec lines, version dispatch.

TensorRT cannot be installed here, so the builder is driven through a fake module object and a fake ``trtexec``
script; the one real-TensorRT test is marked ``trt`` and skips where ``tensorrt`` does not import.
"""

from __future__ import annotations

import os
import stat
import sys
import types
from pathlib import Path

import pytest

from edgebridge.export import tensorrt as trt_mod
from edgebridge.export.tensorrt import (
    ShapeProfile,
    TensorRTUnavailable,
    api_for_version,
    build_engine,
    engine_cache_key,
    profile_from_manifest,
    trtexec_command,
    trtexec_version,
)

MANIFEST = {"inputs": [{"name": "signal", "shape": [None, 1, 200], "dtype": "float32", "max_batch": 64}]}
GPU = {"name": "Orin (nvgpu)", "sm": "8.7"}


def test_profile_from_manifest():
    p = profile_from_manifest(MANIFEST)
    assert (p.input_name, p.min, p.opt, p.max) == ("signal", (1, 1, 200), (1, 1, 200), (64, 1, 200))
    assert profile_from_manifest(MANIFEST, opt_batch=8, max_batch=16).max == (16, 1, 200)
    with pytest.raises(ValueError, match="opt_batch 99 outside 1..64"):
        profile_from_manifest(MANIFEST, opt_batch=99)


def test_cache_key_changes_with_every_component():
    p = profile_from_manifest(MANIFEST)
    base = engine_cache_key("ab" * 32, "10.3.0", GPU, "fp16", p)
    assert base.startswith("fp16-trt10.3.0-sm8.7-") and base == engine_cache_key("ab" * 32, "10.3.0", GPU, "fp16", p)
    variants = [engine_cache_key("cd" * 32, "10.3.0", GPU, "fp16", p),
                engine_cache_key("ab" * 32, "10.16.2", GPU, "fp16", p),
                engine_cache_key("ab" * 32, "10.3.0", {"name": "H100", "sm": "9.0"}, "fp16", p),
                engine_cache_key("ab" * 32, "10.3.0", GPU, "int8", p),
                engine_cache_key("ab" * 32, "10.3.0", GPU, "fp16", profile_from_manifest(MANIFEST, max_batch=8))]
    assert len({base, *variants}) == 6


def test_version_dispatch():
    assert api_for_version("10.3.0.26") == trt_mod.TrtApi(10, True, False, False)
    assert api_for_version("11.4.0") == trt_mod.TrtApi(11, True, False, False)
    assert api_for_version("8.5.2.2") == trt_mod.TrtApi(8, False, True, True)
    with pytest.raises(TensorRTUnavailable, match="too old"):
        api_for_version("7.2.1")


def test_trtexec_command_lines(tmp_path):
    p = profile_from_manifest(MANIFEST, max_batch=16)
    cmd = trtexec_command("trtexec", Path("m.int8.onnx"), Path("e.engine"), p, "int8", api_for_version("10.3"),
                          Path("t.cache"), 512)
    assert cmd == ["trtexec", "--onnx=m.int8.onnx", "--saveEngine=e.engine", "--minShapes=signal:1x1x200",
                   "--optShapes=signal:1x1x200", "--maxShapes=signal:16x1x200", "--memPoolSize=workspace:512M",
                   "--timingCacheFile=t.cache", "--skipInference", "--stronglyTyped"]
    legacy = trtexec_command("trtexec", Path("m.onnx"), Path("e"), p, "int8", api_for_version("8.5"), Path("t"))
    assert legacy[-2:] == ["--fp16", "--int8"] and "--stronglyTyped" not in legacy
    assert not {"--fp16", "--int8", "--stronglyTyped"} & set(
        trtexec_command("trtexec", Path("m"), Path("e"), p, "fp32", api_for_version("8.5"), Path("t")))
    assert trtexec_version("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --help") == "10.3.0"
    assert trtexec_version("no banner") is None


def _fake_trt(version: str) -> types.SimpleNamespace:
    """A module object with the builder calls edgebridge makes; records them in ``calls``."""
    calls: dict = {"flags": [], "shapes": []}
    major = int(version.split(".")[0])

    class Config:
        def set_memory_pool_limit(self, pool, size): calls["workspace"] = size
        def set_flag(self, flag): calls["flags"].append(flag)
        def add_optimization_profile(self, p): calls["profile"] = p
        def create_timing_cache(self, data): return types.SimpleNamespace(serialize=lambda: b"timing")
        def set_timing_cache(self, cache, ignore): calls["timing"] = True
        def get_timing_cache(self): return types.SimpleNamespace(serialize=lambda: b"timing")

    class Builder:
        def __init__(self, logger): pass
        def create_network(self, flags):
            calls["network_flags"] = flags
            return "net"
        def create_builder_config(self): return Config()
        def create_optimization_profile(self):
            return types.SimpleNamespace(set_shape=lambda *a: calls["shapes"].append(a))
        def build_serialized_network(self, net, cfg): return b"ENGINE"

    class Parser:
        def __init__(self, net, logger): self.num_errors = 0
        def parse_from_file(self, path):
            calls["parsed"] = path
            return True

    flag_names = {"STRONGLY_TYPED": 5, "EXPLICIT_BATCH": 0} if major < 11 else {"STRONGLY_TYPED": 5}
    mod = types.SimpleNamespace(
        __version__=version, calls=calls, Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda s, lvl: None}),
        Builder=Builder, OnnxParser=Parser, MemoryPoolType=types.SimpleNamespace(WORKSPACE="ws"),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(**flag_names))
    if major < 11:  # TensorRT 11 removed the precision builder flags
        mod.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    return mod


@pytest.mark.parametrize(("version", "network_flags", "builder_flags"),
                         [("10.3.0", 1 << 5, []), ("11.4.0", 1 << 5, []), ("8.6.1", 1 << 0, ["FP16", "INT8"])])
def test_python_builder_with_fake_module(monkeypatch, tmp_path, version, network_flags, builder_flags):
    fake = _fake_trt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_mod, "gpu_identity", lambda: GPU)
    onnx_path = tmp_path / "m.int8.onnx"
    onnx_path.write_bytes(b"onnx")
    profile = profile_from_manifest(MANIFEST, max_batch=8)
    rec = build_engine(onnx_path, "ef" * 32, "int8", profile, cache_dir=tmp_path / "cache", workspace_mib=256)
    assert rec["status"] == "built" and rec["method"] == "python" and rec["tensorrt"] == version
    assert Path(rec["engine"]).read_bytes() == b"ENGINE" and Path(rec["engine"]).parent == tmp_path / "cache"
    assert fake.calls["network_flags"] == network_flags and fake.calls["flags"] == builder_flags
    assert fake.calls["shapes"] == [("signal", (1, 1, 200), (1, 1, 200), (8, 1, 200))]
    assert fake.calls["workspace"] == 256 << 20 and fake.calls["parsed"] == str(onnx_path)
    assert build_engine(onnx_path, "ef" * 32, "int8", profile, cache_dir=tmp_path / "cache")["status"] == "cached"


def test_trtexec_fallback_runs_the_command(monkeypatch, tmp_path):
    script = tmp_path / "trtexec"
    script.write_text("#!/bin/sh\n"
                      "echo '&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec'\n"
                      f"echo \"$@\" > {tmp_path}/args.txt\n"
                      "for a in \"$@\"; do case $a in\n"
                      "  --saveEngine=*) echo built > \"${a#--saveEngine=}\";;\n"
                      "esac; done\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # the Python module is absent
    monkeypatch.setattr(trt_mod, "gpu_identity", lambda: GPU)
    onnx_path = tmp_path / "m.fp16.onnx"
    onnx_path.write_bytes(b"onnx")
    rec = build_engine(onnx_path, "01" * 32, "fp16", profile_from_manifest(MANIFEST), cache_dir=tmp_path / "c")
    assert rec["method"] == "trtexec" and rec["tensorrt"] == "10.3.0" and rec["status"] == "built"
    args = (tmp_path / "args.txt").read_text()
    assert "--stronglyTyped" in args and "--maxShapes=signal:64x1x200" in args and "--fp16" not in args


def test_missing_tensorrt_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setenv("PATH", str(tmp_path))  # no trtexec either
    monkeypatch.setattr(trt_mod, "gpu_identity", lambda: GPU)
    with pytest.raises(TensorRTUnavailable, match="no `tensorrt` module and no `trtexec` on PATH") as info:
        build_engine(tmp_path / "m.onnx", "00", "fp32", ShapeProfile("signal", (1,), (1,), (2,)), tmp_path)
    assert "\n" not in str(info.value)
    monkeypatch.setattr(trt_mod, "gpu_identity", lambda: None)
    with pytest.raises(TensorRTUnavailable, match="no NVIDIA GPU"):
        build_engine(tmp_path / "m.onnx", "00", "fp32", ShapeProfile("signal", (1,), (1,), (2,)), tmp_path)


def test_export_with_trt_flag_still_writes_bundle(tmp_path, caplog, monkeypatch):
    from fixtures_export import check_windows, make_chain

    from edgebridge.export.api import build_engines, export_bundle

    monkeypatch.setattr(trt_mod, "gpu_identity", lambda: None)
    model, config = make_chain(seed=2)
    path = export_bundle(model, config, tmp_path / "b", check_windows(model, n=8), precisions=("fp32",),
                         exporter="torchscript", trt=True)
    assert (path / "model.fp32.onnx").is_file() and not list(path.rglob("*.engine"))
    assert any("TensorRT engines not built" in r.message for r in caplog.records)
    assert build_engines(path) == {"fp32": {"status": "unavailable", "reason":
                                            "no NVIDIA GPU visible (nvidia-smi missing or failed); engines are "
                                            "built on the target device"}}


@pytest.mark.trt
def test_real_tensorrt_builds_and_runs(tmp_path):
    """On a machine with TensorRT and a GPU: build every precision of a tiny bundle and run it."""
    import numpy as np
    from fixtures_export import calib_windows, check_windows, make_chain

    from edgebridge.calibration import CalibrationReader
    from edgebridge.export.api import build_engines, export_bundle
    from edgebridge.runtime.backends import open_backend

    model, config = make_chain()
    check = check_windows(model, n=16)
    path = export_bundle(model, config, tmp_path / "b", check,
                         calib=CalibrationReader(calib_windows(32), config.spec_new))
    results = build_engines(path, cache_dir=tmp_path / "engines")
    for p, rec in results.items():
        assert rec["status"] == "built", rec
        out = open_backend(rec["engine"]).run(check.x_new)
        assert np.mean(out.argmax(1) == check.labels) >= 0.9, p
