"""Bundle: manifest contents, atomic write, tamper detection, load_bundle round trip, verify, int8 gate."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from fixtures_export import CLASSES, RAW_FS_HZ, calib_windows, check_windows, make_chain

from edgebridge.backbones.tiny import default_spec
from edgebridge.calibration import CalibrationReader
from edgebridge.export.api import export_bundle, verify_bundle
from edgebridge.export.bundle import BundleError, load_bundle, sha256_file
from edgebridge.export.onnx import read_metadata
from edgebridge.export.parity import Int8GateError
from edgebridge.export.quantize import QuantizationError
from edgebridge.preprocess import Preprocessor


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, config = make_chain("tiny_cnn", "tiny_transformer")
    check = check_windows(model)
    reader = CalibrationReader(calib_windows(), config.spec_new, {"source": "test"})
    out = tmp_path_factory.mktemp("b") / "bundle"
    path = export_bundle(model, config, out, check, calib=reader, precisions=("fp32", "fp16", "int8"))
    return path, model, config, check


def _copy(exported, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(exported[0], dst)
    return dst


def test_manifest_describes_everything(exported):
    path, _, config, check = exported
    m = json.loads((path / "manifest.json").read_text())
    assert m["spec"] == config.spec_new.to_dict()
    assert m["class_names"] == list(CLASSES)
    assert m["inputs"][0]["shape"] == [None, 1, 200] and m["outputs"][0]["shape"] == [None, 3]
    assert sorted(m["precisions"]) == ["fp16", "fp32", "int8"]
    assert m["positions"] == {"in_layer": 1, "out_layer": 2, "rank": 4, "n_prototypes": 8}
    assert m["source"]["new_model"]["backbone"] == "tiny_cnn"
    assert m["calibration"]["n_windows"] == 48 and m["calibration"]["source"] == "test"
    assert m["packages"]["onnxruntime"] and m["opset"] == 20 and m["exporter"] == "dynamo"
    for rel, info in m["files"].items():  # independent re-hash of every file
        assert sha256_file(path / rel) == info["sha256"]
    assert set(m["files"]) == {"model.fp32.onnx", "model.fp16.onnx", "model.int8.onnx", "check_windows.npz"}
    assert m["precisions"]["int8"]["gate"]["passed"] is True
    meta = read_metadata(path / "model.int8.onnx")
    assert meta["spec"] == config.spec_new.to_dict() and meta["class_names"] == list(CLASSES)
    assert meta["precision"] == "int8"
    assert not list(path.parent.glob(".bundle.staging-*"))


def test_round_trip_matches_torch(exported):
    path, model, _, check = exported
    with torch.no_grad():
        ref = model(torch.from_numpy(check.x_new)).numpy()
    b = load_bundle(path)
    assert b.provider == "CPUExecutionProvider"
    np.testing.assert_allclose(b.predict_preprocessed(check.x_new), ref, atol=1e-4, rtol=1e-3)
    # raw windows at the sensor rate go through Preprocessor(spec, fs_hz) inside predict
    np.testing.assert_allclose(b.predict(check.raw_new, fs_hz=RAW_FS_HZ), ref, atol=1e-4, rtol=1e-3)
    single = b.predict(check.raw_new[0], fs_hz=RAW_FS_HZ)
    assert single.shape == (1, 3)
    assert b.labels(ref[:2]) == [CLASSES[i] for i in ref[:2].argmax(1)]
    for precision in ("fp16", "int8"):
        logits = load_bundle(path, precision=precision).predict_preprocessed(check.x_new)
        assert np.mean(logits.argmax(1) == ref.argmax(1)) >= 0.95


def test_spec_from_manifest_drives_preprocessing(exported):
    path, _, _, check = exported
    b = load_bundle(path)
    assert b.spec == default_spec("ppg")
    x = Preprocessor(b.spec, RAW_FS_HZ)(check.raw_new[3])
    assert np.array_equal(x, check.x_new[3])


def test_verify_bundle_reports(exported):
    report = verify_bundle(exported[0])
    assert report["ok"] and report["hashes"] == "ok"
    for p, item in report["precisions"].items():
        m = json.loads((exported[0] / "manifest.json").read_text())
        assert item["metrics"]["balanced_accuracy"] == pytest.approx(m["precisions"][p]["metrics"]["balanced_accuracy"])
        assert item["onnx"] == "ok"
    assert report["precisions"]["fp32"]["parity"]["max_abs"] < 1e-4


@pytest.mark.parametrize("damage", ["flip_byte", "delete_file", "edit_manifest", "extra_file", "truncate_npz"])
def test_tampered_bundle_is_rejected(exported, tmp_path, damage):
    dst = _copy(exported, tmp_path)
    if damage == "flip_byte":
        data = bytearray((dst / "model.fp32.onnx").read_bytes())
        data[len(data) // 2] ^= 0x01
        (dst / "model.fp32.onnx").write_bytes(bytes(data))
        match = "model.fp32.onnx changed"
    elif damage == "delete_file":
        (dst / "model.int8.onnx").unlink()
        match = "missing model.int8.onnx"
    elif damage == "edit_manifest":
        m = json.loads((dst / "manifest.json").read_text())
        m["spec"]["fs_hz"] = 64.0
        (dst / "manifest.json").write_text(json.dumps(m))
        match = "edited after export"
    elif damage == "extra_file":
        (dst / "model.fp64.onnx").write_bytes(b"x")
        match = "unexpected file"
    else:
        (dst / "check_windows.npz").write_bytes((dst / "check_windows.npz").read_bytes()[:100])
        match = "check_windows.npz changed"
    with pytest.raises(BundleError, match=match):
        load_bundle(dst)
    with pytest.raises(BundleError, match=match):
        verify_bundle(dst)


def test_engine_cache_dir_inside_bundle_is_allowed(exported, tmp_path):
    dst = _copy(exported, tmp_path)
    (dst / "engines").mkdir()
    (dst / "engines" / "fp16-x.engine").write_bytes(b"local")
    assert load_bundle(dst).predict_preprocessed(exported[3].x_new[:2]).shape == (2, 3)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path)


def test_missing_precision_named(exported, tmp_path):
    model, config = make_chain(seed=3)
    path = export_bundle(model, config, tmp_path / "b", check_windows(model, n=8), precisions=("fp32",),
                         exporter="torchscript")
    with pytest.raises(BundleError, match="no 'int8' model; present: \\['fp32'\\]"):
        load_bundle(path, precision="int8")


def test_int8_without_calibration_refused_before_writing(tmp_path):
    model, config = make_chain()
    with pytest.raises(QuantizationError, match="calibration"):
        export_bundle(model, config, tmp_path / "b", check_windows(model, n=8), precisions=("fp32", "int8"))
    assert not (tmp_path / "b").exists()


def test_int8_gate_stops_and_allow_flag_records(tmp_path):
    model, config = make_chain("tiny_transformer", "tiny_cnn", seed=1)
    check = check_windows(model, n=16)
    reader = CalibrationReader(calib_windows(32), config.spec_new)
    kwargs = dict(calib=reader, precisions=("fp32", "int8"), exporter="torchscript", int8_max_drop_pt=-5.0)
    with pytest.raises(Int8GateError, match="not shipping int8") as info:
        export_bundle(model, config, tmp_path / "gated", check, **kwargs)
    assert info.value.report["passed"] is False and info.value.report["max_drop_pt"] == -5.0
    assert not (tmp_path / "gated").exists() and not list(tmp_path.glob(".gated.staging-*"))
    path = export_bundle(model, config, tmp_path / "allowed", check, allow_int8_drop=True, **kwargs)
    gate = json.loads((path / "manifest.json").read_text())["precisions"]["int8"]["gate"]
    assert gate["passed"] is False and gate["allowed_drop"] is True
    assert gate["drop_pt"] == pytest.approx(100 * (gate["fp32"] - gate["int8"]))


def test_existing_bundle_needs_overwrite(exported, tmp_path):
    model, config = make_chain(seed=4)
    check = check_windows(model, n=8)
    out = tmp_path / "b"
    export_bundle(model, config, out, check, precisions=("fp32",), exporter="torchscript")
    first = sha256_file(out / "manifest.json")
    with pytest.raises(BundleError, match="exists"):
        export_bundle(model, config, out, check, precisions=("fp32",), exporter="torchscript")
    assert sha256_file(out / "manifest.json") == first
    export_bundle(model, config, out, check, precisions=("fp32",), exporter="torchscript", overwrite=True)
    assert load_bundle(out).manifest["exporter"] == "torchscript"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
