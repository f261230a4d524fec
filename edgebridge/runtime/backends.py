"""Inference backends behind one protocol: ``run(x (B, C, T) float32) -> logits (B, K) float32``.

Chosen by file suffix (``.onnx`` → ONNX Runtime, ``.engine``/``.plan`` → TensorRT, ``.pt2`` → PyTorch). This module
imports NumPy only; onnxruntime, tensorrt and torch are imported when a backend is built, so a device running an
ONNX bundle needs no PyTorch wheel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgebridge.registry import Registry
from edgebridge.runtime.ort_int8 import uint8_model_bytes, wants_uint8_activations

log = logging.getLogger(__name__)

#: Highest ORT graph optimisation level that never crashed an fp16 graph on the CPU EP. ORT 1.32's default
#: ORT_ENABLE_ALL segfaults while creating the session for fp16 graphs with nn.MultiheadAttention-style
#: attention (tests/test_quantize.py reproduces it in a subprocess); ENABLE_LAYOUT/EXTENDED/BASIC load and run.
FP16_CPU_OPT_LEVEL = "ORT_ENABLE_LAYOUT"
PROVIDER_ALIASES = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


class BackendError(RuntimeError):
    """A backend cannot be built here (missing package or device) or was fed the wrong input."""


@runtime_checkable
class Backend(Protocol):
    """What the streaming runtime calls. ``provider`` names what really runs (e.g. ``CPUExecutionProvider``)."""

    provider: str
    input_shape: tuple[int | None, ...]

    def run(self, x: np.ndarray) -> np.ndarray:
        """Shapes: x (B, C, T) float32 -> logits (B, K) float32."""
        ...


def check_input(x: np.ndarray, shape: tuple[int | None, ...]) -> np.ndarray:
    """Contiguous float32 (B, C, T) matching the model's fixed dims, or a BackendError naming the mismatch."""
    x = np.asarray(x)
    if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape, strict=True)):
        raise BackendError(f"model input must have shape {tuple('B' if s is None else s for s in shape)}, "
                           f"got {tuple(x.shape)}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _static_shape(dims: list[Any]) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in dims)


class OrtBackend:
    """ONNX Runtime session on one ``.onnx`` file.

    Args:
        path: the ONNX file.
        provider: ``cpu`` (default), ``cuda`` or ``tensorrt`` (a list of ORT provider names is also accepted).
            ORT silently falls back to CPU when a GPU provider cannot load; ``self.provider`` says what runs.
        precision: ``fp16`` caps the CPU optimisation level (see FP16_CPU_OPT_LEVEL); None reads it from the
            file's ``edgebridge.precision`` metadata.
        threads: intra-op threads (None: ORT's default). spinning: False stops idle threads busy-waiting.
        provider_options: per-provider options, e.g. ``{"TensorrtExecutionProvider": {"trt_engine_cache_path": …}}``.
        uint8_activations: run an int8 graph with its activations moved to uint8 (exact; see ``ort_int8``).
            None (default) does so for int8 on the CPU EP of an x86 machine, where ORT's integer kernels are U8S8.
    """

    def __init__(self, path: str | Path, provider: str | list[str] | None = None, precision: str | None = None,
                 threads: int | None = None, spinning: bool = True,
                 provider_options: dict[str, dict[str, Any]] | None = None,
                 uint8_activations: bool | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"no ONNX file at {self.path}")
        names = self._provider_names(provider, ort.get_available_providers())
        self.precision = precision or self._read_precision(ort)
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        if not spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.precision == "fp16" and "CPUExecutionProvider" in names:
            opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, FP16_CPU_OPT_LEVEL)
        provider_options = provider_options or {}
        providers = [(n, provider_options[n]) if n in provider_options else n for n in names]
        if uint8_activations is None:
            uint8_activations = wants_uint8_activations(self.precision, names)
        self.uint8_activations = bool(uint8_activations)
        self.session = ort.InferenceSession(self._model_source(), opts, providers=providers)
        self.provider = self.session.get_providers()[0]
        if self.provider != names[0]:
            log.warning("requested %s but ONNX Runtime runs %s on %s", names[0], self.provider, self.path.name)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        self.input_shape = _static_shape(inp.shape)
        self.output_shape = _static_shape(out.shape)

    def _model_source(self) -> str | bytes:
        """The file path, or the graph with uint8 activations as bytes when that was asked for."""
        if not self.uint8_activations:
            return str(self.path)
        try:
            model, changed = uint8_model_bytes(str(self.path))
        except ImportError:
            log.warning("the 'onnx' package is missing, so %s runs with int8 activations, which ONNX Runtime's x86 "
                        "kernels run ~3x slower; pip install onnx", self.path.name)
            self.uint8_activations = False
            return str(self.path)
        log.debug("%s: %d activation Q/DQ node(s) moved to uint8 for ORT's U8S8 CPU kernels", self.path.name, changed)
        return model

    @staticmethod
    def _provider_names(provider: str | list[str] | None, available: list[str]) -> list[str]:
        if isinstance(provider, (list, tuple)):
            return list(provider)
        key = (provider or "cpu").lower()
        if key not in PROVIDER_ALIASES:
            raise BackendError(f"unknown provider '{provider}'; known: {sorted(PROVIDER_ALIASES)}")
        wanted = list(PROVIDER_ALIASES[key])
        if wanted[0] not in available:
            raise BackendError(f"ONNX Runtime here has no {wanted[0]} (available: {available}); install "
                               "onnxruntime-gpu built for this device, or use provider='cpu'")
        return wanted

    def _read_precision(self, ort: Any) -> str | None:
        """The ``edgebridge.precision`` metadata, read with optimisations off (safe for any precision)."""
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        meta = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"]).get_modelmeta()
        value = meta.custom_metadata_map.get("edgebridge.precision")
        return value.strip('"') if value else None

    def run(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, self.input_shape)
        return self.session.run([self.output_name], {self.input_name: x})[0].astype(np.float32, copy=False)


class TrtBackend:
    """A TensorRT engine built on this device (``export.tensorrt.build_engine``), run with CUDA buffers from torch.

    TensorRT ≥ 8.5 tensor-name API: ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``.
    """

    def __init__(self, path: str | Path) -> None:
        from edgebridge.export.tensorrt import TensorRTUnavailable, import_tensorrt

        try:
            import torch
        except ImportError as exc:
            raise BackendError("TrtBackend needs torch with CUDA for device buffers") from exc
        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise TensorRTUnavailable("TensorRT engine given but no CUDA GPU is visible")
        self.path, self._torch = Path(path), torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialize {self.path} (built by another TensorRT or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.input_name = next(n for n, i in zip(names, is_input, strict=True) if i)
        self.output_name = next(n for n, i in zip(names, is_input, strict=True) if not i)
        self.input_shape = _static_shape(list(self.engine.get_tensor_shape(self.input_name)))
        self.provider = "TensorRT"

    def run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = check_input(x, self.input_shape)
        x_gpu = torch.from_numpy(x).cuda()
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), device="cuda", dtype=torch.float32)
        self.context.set_tensor_address(self.input_name, x_gpu.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError(f"TensorRT execution failed for {self.path.name}")
        stream.synchronize()
        return out.cpu().numpy()


class TorchBackend:
    """PyTorch eager on an ``nn.Module`` or a ``torch.export`` ``.pt2`` file (workstation reference)."""

    def __init__(self, model: Any, input_shape: tuple[int | None, ...] | None = None) -> None:
        import torch

        if isinstance(model, (str, Path)):
            model = torch.export.load(str(model)).module()
        else:
            model.eval()
        self.model, self._torch = model, torch
        self.input_shape = input_shape or (None, None, None)
        self.provider = "torch-cpu"

    def run(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, self.input_shape)
        with self._torch.no_grad():
            return self.model(self._torch.from_numpy(x)).float().numpy()


BACKENDS: Registry[Callable[..., Backend]] = Registry("backend file suffix")
BACKENDS.add(".onnx", OrtBackend)
BACKENDS.add(".engine", TrtBackend)
BACKENDS.add(".plan", TrtBackend)
BACKENDS.add(".pt2", TorchBackend)


def open_backend(path: str | Path, **kwargs: Any) -> Backend:
    """The backend for ``path``'s suffix (``.onnx``, ``.engine``/``.plan``, ``.pt2``); kwargs go to it."""
    return BACKENDS.get(Path(path).suffix)(path, **kwargs)
