"""ONNX → TensorRT engine, built on the target and cached; never shipped in a bundle.

Strongly typed networks (the ONNX already says fp16 or carries explicit Q/DQ), so TensorRT 10.x and 11.x need no
precision flags; 8.x/9.x get the legacy builder flags. The Python API is used when ``tensorrt`` imports, else
``trtexec`` on PATH. Where neither exists, :class:`TensorRTUnavailable` says so in one line. NumPy-free and
torch-free: only the standard library at import.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MIB = 1024
TIMING_CACHE_NAME = "timing.cache"


class TensorRTUnavailable(RuntimeError):
    """No TensorRT (Python module or trtexec) or no GPU on this machine."""


@dataclass(frozen=True)
class TrtApi:
    """Which builder calls a TensorRT major version takes."""

    major: int
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED (10.x; accepted and ignored in 11.x)
    explicit_batch: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH (needed before 10)
    precision_flags: bool  # BuilderFlag.FP16/INT8 (removed in 11; not needed with strong typing)


def api_for_version(version: str) -> TrtApi:
    """Builder API of a TensorRT version string such as ``"10.3.0.26"``."""
    major = int(str(version).split(".")[0])
    if major < 8:
        raise TensorRTUnavailable(f"TensorRT {version} is too old; edgebridge needs 8.5 or newer")
    if major >= 10:
        return TrtApi(major, strongly_typed=True, explicit_batch=False, precision_flags=False)
    return TrtApi(major, strongly_typed=False, explicit_batch=True, precision_flags=True)


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or TensorRTUnavailable with the one-line reason."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise TensorRTUnavailable(f"TensorRT Python module not importable ({exc}); on Jetson use JetPack's "
                                  "python3-libnvinfer, elsewhere `pip install tensorrt-cu12<11`") from exc


@dataclass(frozen=True)
class ShapeProfile:
    """Optimisation profile over the dynamic batch dim. ``min``/``opt``/``max`` are full input shapes."""

    input_name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def as_trtexec(self) -> list[str]:
        dims = {k: "x".join(str(d) for d in getattr(self, k)) for k in ("min", "opt", "max")}
        return [f"--{k}Shapes={self.input_name}:{dims[k]}" for k in ("min", "opt", "max")]


def profile_from_manifest(manifest: dict[str, Any], opt_batch: int = 1, max_batch: int | None = None) -> ShapeProfile:
    """Batch 1..max from the manifest's input (opt = 1: the streaming case); C and T are fixed by the bundle."""
    inp = manifest["inputs"][0]
    fixed = tuple(int(d) for d in inp["shape"][1:])
    top = int(max_batch or inp["max_batch"])
    if not 1 <= opt_batch <= top:
        raise ValueError(f"opt_batch {opt_batch} outside 1..{top}")
    return ShapeProfile(inp["name"], (1, *fixed), (opt_batch, *fixed), (top, *fixed))


def gpu_identity() -> dict[str, str] | None:
    """``{"name", "sm"}`` of GPU 0 from nvidia-smi, or None when no NVIDIA GPU answers."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    proc = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"], capture_output=True,
                          text=True, timeout=30, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    name, _, sm = proc.stdout.strip().splitlines()[0].rpartition(",")
    return {"name": name.strip(), "sm": sm.strip()}


def engine_cache_key(onnx_sha256: str, trt_version: str, gpu: dict[str, str], precision: str,
                     profile: ShapeProfile) -> str:
    """Key of an engine: any change of TensorRT, GPU, precision, profile or ONNX bytes means a rebuild."""
    payload = {"onnx_sha256": onnx_sha256, "tensorrt": str(trt_version), "gpu": gpu.get("name"), "sm": gpu.get("sm"),
               "precision": precision, "profile": asdict(profile)}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]
    return f"{precision}-trt{trt_version}-sm{gpu.get('sm', 'x')}-{digest}"


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGEBRIDGE_ENGINE_CACHE", Path.home() / ".cache" / "edgebridge" / "engines"))


def trtexec_command(trtexec: str, onnx_path: Path, engine_path: Path, profile: ShapeProfile, precision: str,
                    api: TrtApi, timing_cache: Path, workspace_mib: int = DEFAULT_WORKSPACE_MIB) -> list[str]:
    """trtexec command line building one engine (strongly typed from 10.x, builder flags before)."""
    cmd = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={engine_path}", *profile.as_trtexec(),
           f"--memPoolSize=workspace:{workspace_mib}M", f"--timingCacheFile={timing_cache}", "--skipInference"]
    if api.strongly_typed:
        cmd.append("--stronglyTyped")
    elif precision in ("fp16", "int8"):
        cmd.append("--fp16")
        if precision == "int8":
            cmd.append("--int8")
    return cmd


def trtexec_version(text: str) -> str | None:
    """TensorRT version from trtexec's banner ``[TensorRT v100300]`` → ``"10.3.0"``."""
    m = re.search(r"\[TensorRT v(\d+)\]", text)
    if not m:
        return None
    v = int(m.group(1))
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}"


def _build_python(trt: Any, onnx_path: Path, engine_path: Path, profile: ShapeProfile, precision: str,
                  timing_cache: Path, workspace_mib: int) -> None:
    api = api_for_version(trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if api.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if api.explicit_batch:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if api.precision_flags and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    opt = builder.create_optimization_profile()
    opt.set_shape(profile.input_name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(opt)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path.name} ({precision})")
    engine_path.write_bytes(bytes(serialized))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))


def _trt_version_and_method() -> tuple[str, str, Any]:
    try:
        trt = import_tensorrt()
        return str(trt.__version__), "python", trt
    except TensorRTUnavailable as exc:
        trtexec = shutil.which("trtexec")
        if trtexec is None:
            raise TensorRTUnavailable(f"TensorRT not found: no `tensorrt` module and no `trtexec` on PATH ({exc})") \
                from exc
        banner = subprocess.run([trtexec, "--help"], capture_output=True, text=True, timeout=60, check=False)
        version = trtexec_version(banner.stdout + banner.stderr)
        if version is None:
            raise TensorRTUnavailable(f"could not read the TensorRT version from {trtexec} --help") from exc
        return version, "trtexec", trtexec


def build_engine(onnx_path: str | Path, onnx_sha256: str, precision: str, profile: ShapeProfile,
                 cache_dir: str | Path | None = None, workspace_mib: int = DEFAULT_WORKSPACE_MIB) -> dict[str, Any]:
    """Build (or reuse from the cache) the engine of one bundle precision on this machine.

    Returns ``{"status": "built"|"cached", "engine": path, "key", "method", "tensorrt", "gpu"}``; raises
    TensorRTUnavailable when there is no TensorRT or no GPU.
    """
    gpu = gpu_identity()
    if gpu is None:
        raise TensorRTUnavailable("no NVIDIA GPU visible (nvidia-smi missing or failed); engines are built on the "
                                  "target device")
    version, method, handle = _trt_version_and_method()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = engine_cache_key(onnx_sha256, version, gpu, precision, profile)
    engine = cache / f"{key}.engine"
    record = {"engine": str(engine), "key": key, "method": method, "tensorrt": version, "gpu": gpu}
    if engine.is_file():
        return {"status": "cached", **record}
    tmp = engine.with_suffix(".engine.tmp")
    timing = cache / f"{TIMING_CACHE_NAME}.trt{version}.sm{gpu['sm']}"
    if method == "python":
        _build_python(handle, Path(onnx_path), tmp, profile, precision, timing, workspace_mib)
    else:
        cmd = trtexec_command(handle, Path(onnx_path), tmp, profile, precision, api_for_version(version), timing,
                              workspace_mib)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not tmp.is_file():
            raise RuntimeError(f"trtexec failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
    tmp.replace(engine)
    log.info("tensorrt: built %s engine %s with %s (TensorRT %s, %s)", precision, engine, method, version,
             gpu["name"])
    return {"status": "built", **record}
