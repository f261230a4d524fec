"""``edgebridge doctor``: what this machine can run, and the one-line fix for what it cannot.

Deployment fails in the same few places: a Jetson whose pip wheels lack aarch64 native libraries (BrainFlow,
pylsl), an ``onnxruntime`` without the GPU providers, TensorRT only present as JetPack's system package, or a
``setuptools`` too new for BrainFlow's loader. Every check here is read-only, never raises, and says what it saw.
Torch is optional and never imported at module load (this module runs on devices without it).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OK, WARNING, ERROR = "ok", "warning", "error"
NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec",)  # where JetPack puts it (not on PATH)
#: L4T major release -> JetPack line (reference/edge_deploy.md).
L4T_TO_JETPACK = {32: "4.x", 35: "5.1.x", 36: "6.x", 38: "7.0/7.1 (Thor)", 39: "7.2"}
STREAM_EXTRA = "pip install 'edgebridge[stream]'"


@dataclass
class Check:
    """One finding: ``status`` is ok / warning / error; ``fix`` is a command or step when it is not ok."""

    name: str
    status: str
    value: str | None = None
    detail: str = ""
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == OK


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run(cmd: list[str], timeout_s: float = 10.0) -> str | None:
    """stdout+stderr of a command, or None when it is missing, fails to start or times out."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        log.debug("%s: %s", cmd[0], e)
        return None
    return (proc.stdout + proc.stderr) if proc.returncode == 0 or proc.stdout else None


def _vtuple(v: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", v or "")[:3])


def _is_jetson() -> bool:
    return NV_TEGRA_RELEASE.is_file()


def check_python() -> Check:
    return Check("python", OK, platform.python_version(), sys.executable)


def check_platform() -> Check:
    arch = platform.machine()
    detail = f"{platform.system()} {platform.release()}"
    if arch in ("aarch64", "arm64"):
        detail += "; aarch64: BrainFlow and pylsl PyPI wheels carry no native library for it"
    return Check("platform", OK, arch, detail, data={"arch": arch, "system": platform.system()})


def _required(name: str, dist: str) -> Check:
    v = _version(dist)
    if v is None:
        return Check(name, ERROR, None, f"{dist} is required", f"pip install {dist}")
    return Check(name, OK, v)


def check_numpy() -> Check:
    return _required("numpy", "numpy")


def check_scipy() -> Check:
    return _required("scipy", "scipy")


def check_torch() -> Check:
    v = _version("torch")
    if v is None:
        return Check("torch", OK, None, "not installed: fine for streaming ONNX/TensorRT bundles (training and "
                     "export need it)", None)
    return Check("torch", OK, v, "optional (training/export; TensorRT backend buffers)")


def check_onnxruntime() -> Check:
    dists = [d for d in ("onnxruntime", "onnxruntime-gpu") if _version(d)]
    if not dists:
        return Check("onnxruntime", ERROR, None, "ONNX Runtime runs every bundle", "pip install onnxruntime "
                     "(Jetson: onnxruntime-gpu wheel for your JetPack, see docs/jetson.md)")
    try:
        ort = importlib.import_module("onnxruntime")
        providers = list(ort.get_available_providers())
    except (ImportError, OSError) as e:
        return Check("onnxruntime", ERROR, _version(dists[0]), f"import failed: {e}",
                     f"pip install --force-reinstall {dists[0]}")
    data = {"providers": providers, "distributions": dists}
    detail = ("providers " + ", ".join(providers) + " (a build-time list: a GPU provider that cannot load falls "
              "back to CPU; `edgebridge stream` logs the one in use)")
    if len(dists) > 1:
        return Check("onnxruntime", WARNING, ort.__version__, detail + "; both onnxruntime and onnxruntime-gpu are "
                     "installed and shadow each other", "pip uninstall -y onnxruntime onnxruntime-gpu, then install "
                     "one of them", data)
    if _is_jetson() and "TensorrtExecutionProvider" not in providers:
        return Check("onnxruntime", WARNING, ort.__version__, detail + "; CPU-only build on a Jetson",
                     "install the onnxruntime-gpu wheel built for this JetPack (docs/jetson.md)", data)
    return Check("onnxruntime", OK, ort.__version__, detail, None, data)


def _trtexec() -> str | None:
    found = shutil.which("trtexec")
    return found or next((p for p in TRTEXEC_PATHS if Path(p).is_file()), None)


def check_tensorrt() -> Check:
    from edgebridge.export.tensorrt import TensorRTUnavailable, import_tensorrt, trtexec_version

    try:
        trt = import_tensorrt()
        return Check("tensorrt", OK, str(trt.__version__), "Python module", data={"method": "python"})
    except TensorRTUnavailable as e:
        why = str(e)
    exe = _trtexec()
    if exe is not None:
        version = trtexec_version(_run([exe, "--help"], 30.0) or "")
        if version:
            return Check("tensorrt", OK, version, f"trtexec at {exe} (no Python module: engines are built with "
                         "trtexec)", data={"method": "trtexec", "trtexec": exe})
    fix = ("sudo apt install nvidia-tensorrt python3-libnvinfer; in a venv use --system-site-packages"
           if _is_jetson() else "only needed for TensorRT engines on an NVIDIA GPU: pip install 'tensorrt-cu12<11'")
    return Check("tensorrt", WARNING, None, f"not found ({why}); ONNX Runtime still runs bundles", fix)


def check_gpu() -> Check:
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"])
    if out and out.strip() and "," in out:
        name, driver, sm = (p.strip() for p in out.strip().splitlines()[0].split(",")[:3])
        return Check("gpu", OK, name, f"driver {driver}, SM {sm} (nvidia-smi)", data={"sm": sm, "driver": driver})
    if DEVICE_TREE_MODEL.is_file() and _is_jetson():
        model = DEVICE_TREE_MODEL.read_text(errors="replace").strip("\x00 \n")
        return Check("gpu", OK, model, "integrated Jetson GPU (from the device tree)")
    if _version("torch"):
        try:
            torch = importlib.import_module("torch")
            if torch.cuda.is_available():
                return Check("gpu", OK, torch.cuda.get_device_name(0), "CUDA via torch")
        except (ImportError, RuntimeError, OSError) as e:
            log.debug("torch CUDA probe failed: %s", e)
    return Check("gpu", WARNING, None, "no CUDA GPU found: bundles run on the CPU provider",
                 "none needed for CPU streaming; on a Jetson install JetPack (nvidia-jetpack)")


def parse_tegra_release(text: str) -> str | None:
    """``# R36 (release), REVISION: 4.3, …`` -> ``"36.4.3"``."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def check_jetpack() -> Check:
    if not _is_jetson():
        return Check("jetpack", OK, None, "not a Jetson (no /etc/nv_tegra_release)")
    l4t = parse_tegra_release(NV_TEGRA_RELEASE.read_text(errors="replace"))
    jp_pkg = _run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
    major = _vtuple(l4t)[0] if l4t else None
    line = L4T_TO_JETPACK.get(major, "unknown") if major else "unknown"
    value = jp_pkg.strip().split("-")[0] if jp_pkg and jp_pkg.strip() else line
    detail = f"L4T {l4t or '?'} (JetPack {line})"
    if major is not None and major < 36:
        return Check("jetpack", WARNING, value, detail + "; TensorRT 8.5 parses ONNX opset <= 17 only",
                     "export with --opset 17, or move to JetPack 6", {"l4t": l4t})
    fix = None if jp_pkg else "sudo apt install nvidia-jetpack (brings TensorRT, CUDA, cuDNN)"
    return Check("jetpack", OK if jp_pkg else WARNING, value, detail, fix, {"l4t": l4t})


def check_setuptools(python: tuple[int, int] | None = None, version: str | None = None) -> Check:
    """BrainFlow's loader needs ``pkg_resources`` on Python < 3.12, which setuptools >= 82 no longer ships."""
    python = python or sys.version_info[:2]
    version = version if version is not None else _version("setuptools")
    if python >= (3, 12) or version is None or _vtuple(version) < (82,):
        return Check("setuptools", OK, version, "compatible with BrainFlow's loader")
    return Check("setuptools", WARNING, version, f"setuptools {version} on Python {python[0]}.{python[1]} breaks "
                 "`import brainflow.board_shim` (No module named 'pkg_resources')", "pip install 'setuptools<82'")


def _native_check(name: str, dist: str, load: Callable[[], str], aarch64_fix: str) -> Check:
    v = _version(dist)
    if v is None:
        return Check(name, WARNING, None, "not installed (optional: only for this kind of source)", STREAM_EXTRA)
    try:
        native = load()
    except Exception as e:  # noqa: BLE001 - any failure to load a native library is the finding itself
        arm = platform.machine() in ("aarch64", "arm64")
        return Check(name, WARNING, v, f"installed but the native library does not load: {type(e).__name__}: {e}",
                     aarch64_fix if arm else f"pip install --force-reinstall {dist}")
    return Check(name, OK, v, f"native library loads ({native})")


def _brainflow_native() -> str:
    board_shim = importlib.import_module("brainflow.board_shim")
    fs = board_shim.BoardShim.get_sampling_rate(board_shim.BoardIds.SYNTHETIC_BOARD.value)
    return f"synthetic board {fs} Hz"


def _pylsl_native() -> str:
    pylsl = importlib.import_module("pylsl")
    return f"liblsl {pylsl.library_version()}"


def check_brainflow() -> Check:
    return _native_check("brainflow", "brainflow", _brainflow_native,
                         "build BrainFlow from source for aarch64 (docs/jetson.md), or stream over serial/LSL")


def check_pylsl() -> Check:
    return _native_check("pylsl", "pylsl", _pylsl_native,
                         "install liblsl for aarch64 (build labstreaminglayer/liblsl) and set PYLSL_LIB to it")


def check_pyserial() -> Check:
    v = _version("pyserial")
    if v is None:
        return Check("pyserial", WARNING, None, "not installed (optional: serial sources)", STREAM_EXTRA)
    try:
        list_ports = importlib.import_module("serial.tools.list_ports")
        ports = [p.device for p in list_ports.comports()]
    except (ImportError, OSError) as e:
        return Check("pyserial", WARNING, v, f"cannot list ports: {e}", "pip install --force-reinstall pyserial")
    return Check("pyserial", OK, v, "ports: " + (", ".join(ports) if ports else "none found"), data={"ports": ports})


#: Every check, in report order (names are the keys of ``doctor()["checks"]``).
CHECKS: tuple[Callable[[], Check], ...] = (
    check_python, check_platform, check_numpy, check_scipy, check_torch, check_onnxruntime, check_tensorrt,
    check_gpu, check_jetpack, check_brainflow, check_pylsl, check_pyserial, check_setuptools)


def doctor() -> dict[str, Any]:
    """Run every check. Returns ``{"ok": no errors, "warnings": n, "checks": {name: {status, value, detail, fix,
    data}}}``, JSON-serialisable (``edgebridge doctor --json`` prints it)."""
    checks = [fn() for fn in CHECKS]
    return {"ok": all(c.status != ERROR for c in checks), "warnings": sum(c.status == WARNING for c in checks),
            "checks": {c.name: {k: v for k, v in asdict(c).items() if k != "name"} for c in checks}}


def format_report(report: dict[str, Any]) -> str:
    """Human-readable table of ``doctor()``: one line per check, fixes indented below."""
    marks = {OK: "ok  ", WARNING: "warn", ERROR: "FAIL"}
    width = max(len(n) for n in report["checks"])
    lines = []
    for name, c in report["checks"].items():
        value = c["value"] or "-"
        lines.append(f"[{marks[c['status']]}] {name:<{width}}  {value}  {c['detail']}".rstrip())
        if c["fix"] and c["status"] != OK:
            lines.append(f"       {'':<{width}}  fix: {c['fix']}")
    summary = "all checks passed" if report["ok"] and not report["warnings"] else (
        f"{report['warnings']} warning(s)" + ("" if report["ok"] else ", errors present"))
    return "\n".join([*lines, summary])
