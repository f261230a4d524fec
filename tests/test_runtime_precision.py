"""``--precision auto``: which precisions are candidates, and the measured fastest one wins."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_export import check_windows, make_chain

from edgebridge.export.api import export_bundle
from edgebridge.runtime import precision as auto
from edgebridge.runtime.app import open_stream_bundle


def _manifest(int8_gate: dict | None = None, fp16: bool = True) -> dict:
    precisions = {"fp32": {"file": "model.fp32.onnx"}}
    if fp16:
        precisions["fp16"] = {"file": "model.fp16.onnx"}
    if int8_gate is not None:
        precisions["int8"] = {"file": "model.int8.onnx", "gate": int8_gate}
    return {"precisions": precisions}


@pytest.mark.parametrize(("provider", "gate", "expected"), [
    ("cpu", {"passed": True, "allowed_drop": False}, ["fp32", "int8"]),
    (None, {"passed": True, "allowed_drop": False}, ["fp32", "int8"]),
    ("cuda", {"passed": True, "allowed_drop": False}, ["fp32", "fp16", "int8"]),
    ("tensorrt", None, ["fp32", "fp16"]),
    ("cpu", {"passed": False, "allowed_drop": True}, ["fp32"]),  # shipped past a failed gate: never picked silently
    ("cpu", {"passed": False}, ["fp32"]),
])
def test_candidates(provider, gate, expected):
    assert auto.candidates(_manifest(gate), provider) == expected


class _FakeLoaded:
    def __init__(self, precision: str, delay_s: float) -> None:
        self.precision, self.provider, self.delay_s, self.calls = precision, "CPUExecutionProvider", delay_s, 0

    def predict_preprocessed(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        time.sleep(self.delay_s)
        return np.zeros((len(x), 3), np.float32)


def test_fastest_is_measured_not_assumed(monkeypatch):
    monkeypatch.setattr(auto, "TIME_BUDGET_S", 0.02)
    delays = {"fp32": 0.004, "int8": 0.001}
    loaded = {}

    def load(p: str) -> _FakeLoaded:
        loaded[p] = _FakeLoaded(p, delays[p])
        return loaded[p]

    manifest = _manifest({"passed": True, "allowed_drop": False}, fp16=False)
    best, timings = auto.fastest(Path("b"), manifest, load, "cpu", np.zeros((1, 1, 8), np.float32))
    assert best is loaded["int8"] and set(timings) == {"fp32", "int8"}
    assert timings["fp32"] > timings["int8"] >= 1.0  # ms, from the real sleeps
    assert all(v.calls >= auto.WARMUP_CALLS + auto.MIN_CALLS for v in loaded.values())
    delays.update(fp32=0.001, int8=0.004)  # the other way round on another machine: the other winner
    best, _ = auto.fastest(Path("b"), manifest, load, "cpu", np.zeros((1, 1, 8), np.float32))
    assert best is loaded["fp32"]


def test_open_stream_bundle_auto_on_a_real_bundle(tmp_path):
    model, config = make_chain()
    path = export_bundle(model, config, tmp_path / "b", check_windows(model), precisions=("fp32",))
    bundle = open_stream_bundle(path)  # auto: fp32 is the only candidate here
    assert bundle.precision == "fp32" and bundle.provider == "CPUExecutionProvider"
    assert open_stream_bundle(path, precision="fp32").precision == "fp32"
