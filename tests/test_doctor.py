"""doctor(): every check reports what is really installed here, Jetson/TensorRT detection on faked files and
commands, the setuptools/BrainFlow and aarch64 native-library hints, and it runs with torch blocked."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import numpy as np
import pytest
import scipy

from edgebridge import doctor as doc

NAMES = ["python", "platform", "numpy", "scipy", "torch", "onnxruntime", "tensorrt", "gpu", "jetpack", "brainflow",
         "pylsl", "pyserial", "setuptools"]


def test_report_matches_this_machine() -> None:
    import onnxruntime as ort

    report = doc.doctor()
    json.dumps(report)  # --json must be able to print it
    checks = report["checks"]
    assert list(checks) == NAMES
    assert checks["python"]["value"] == platform.python_version()
    assert checks["platform"]["value"] == platform.machine()
    assert checks["numpy"]["value"] == np.__version__ and checks["scipy"]["value"] == scipy.__version__
    assert checks["onnxruntime"]["value"] == ort.__version__
    assert checks["onnxruntime"]["data"]["providers"] == ort.get_available_providers()
    for name, c in checks.items():
        assert c["status"] in ("ok", "warning", "error"), name
        assert c["status"] == "ok" or c["fix"], f"{name} is not ok but gives no fix"
    assert report["ok"] == all(c["status"] != "error" for c in checks.values())
    assert report["warnings"] == sum(c["status"] == "warning" for c in checks.values())
    text = doc.format_report(report)
    assert all(n in text for n in NAMES) and len(text.splitlines()) == len(NAMES) + report["warnings"] + 1


def test_jetson_release_and_jetpack_package(tmp_path, monkeypatch) -> None:
    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan 8\n")
    monkeypatch.setattr(doc, "NV_TEGRA_RELEASE", rel)
    monkeypatch.setattr(doc, "_run", lambda cmd, timeout_s=10.0: "6.2.1+b38" if cmd[0] == "dpkg-query" else None)
    c = doc.check_jetpack()
    assert (c.status, c.value, c.data["l4t"]) == ("ok", "6.2.1+b38", "36.4.3") and "JetPack 6.x" in c.detail
    rel.write_text("# R35 (release), REVISION: 5.0, GCID: 1, BOARD: t186ref, EABI: aarch64\n")
    monkeypatch.setattr(doc, "_run", lambda cmd, timeout_s=10.0: None)
    c = doc.check_jetpack()
    assert c.status == "warning" and "opset 17" in c.fix and c.value == "5.1.x"
    assert doc.parse_tegra_release("garbage") is None


def test_tensorrt_found_through_trtexec(tmp_path, monkeypatch) -> None:
    exe = tmp_path / "trtexec"
    exe.write_text("#!/bin/sh\necho '&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --help'\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # no Python module: fall back to the trtexec banner
    c = doc.check_tensorrt()
    assert (c.status, c.value, c.data["method"]) == ("ok", "10.3.0", "trtexec")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(doc, "TRTEXEC_PATHS", ())
    c = doc.check_tensorrt()
    assert c.status == "warning" and c.value is None and "tensorrt" in c.fix


@pytest.mark.parametrize(("python", "version", "status"), [((3, 11), "82.0.0", "warning"), ((3, 10), "81.0.0", "ok"),
                                                           ((3, 12), "84.2.1", "ok"), ((3, 10), None, "ok")])
def test_setuptools_vs_brainflow(python, version, status) -> None:
    c = doc.check_setuptools(python, version)
    assert c.status == status
    if status == "warning":
        assert c.fix == "pip install 'setuptools<82'" and "pkg_resources" in c.detail


def test_native_library_failure_on_aarch64_points_to_a_source_build(monkeypatch) -> None:
    def broken() -> str:
        raise OSError("libBoardController.so: cannot open shared object file")

    monkeypatch.setattr(doc, "_brainflow_native", broken)
    monkeypatch.setattr(doc.platform, "machine", lambda: "aarch64")
    c = doc.check_brainflow()
    assert c.status == "warning" and "OSError" in c.detail and "from source" in c.fix
    monkeypatch.setattr(doc, "_version", lambda dist: None)
    c = doc.check_pylsl()
    assert c.status == "warning" and c.value is None and "edgebridge[stream]" in c.fix


def test_doctor_runs_with_torch_blocked() -> None:
    code = """
import json, sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked")
sys.meta_path.insert(0, BlockTorch())
from edgebridge.doctor import doctor
report = doctor()
assert "torch" not in sys.modules or sys.modules["torch"] is None
print(json.dumps(report))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["checks"]["numpy"]["status"] == "ok"
