"""fp16 and INT8-QDQ variants of an exported fp32 ONNX file.

fp16: onnxconverter-common with fp32 IO kept, so every backend feeds the same float32 windows. INT8: static
QDQ, symmetric, per-channel weights, calibrated on real windows only (a CalibrationReader is required; we never
fall back to random scales). ModelOpt is used when importable (TensorRT-style Q/DQ placement), else ONNX Runtime.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgebridge.calibration.reader import CalibrationReader
from edgebridge.export.onnx import set_metadata

log = logging.getLogger(__name__)

#: Op types kept in float by default: normalisation and softmax lose the most accuracy when quantized, and
#: ORT's QDQ Softmax stays asymmetric, which TensorRT rejects (onnxruntime #14626).
HIGH_PRECISION_OPS = ("LayerNormalization", "BatchNormalization", "InstanceNormalization", "GroupNormalization",
                      "Softmax", "LogSoftmax")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
CALIB_METHODS = ("minmax", "entropy", "percentile")
QUANT_TOOLS = ("auto", "ort", "modelopt")


class QuantizationError(RuntimeError):
    """Quantization cannot run as asked (no calibration data, unknown method or tool)."""


def _fix_float_casts(model: Any, original_casts: set[str]) -> int:
    """Retarget the model's own ``Cast(to=float)`` nodes to float16.

    onnxconverter-common leaves them at float, so the next fp16 node gets a float input and ORT refuses to load
    the graph (TorchScript exports; reference/stack_check.md §4.3). Returns how many were changed.
    """
    import onnx

    changed = 0
    for node in model.graph.node:
        if node.op_type == "Cast" and node.name in original_casts:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                    attr.i = onnx.TensorProto.FLOAT16
                    changed += 1
    return changed


def to_fp16(src: str | Path, dst: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
    """fp16 weights and activations, fp32 graph input/output. Returns ``dst``.

    On ORT's CPU EP open the result with ``runtime.backends.OrtBackend`` (it caps the graph optimisation level
    for fp16 graphs: the default level segfaults on some fp16 attention graphs).
    """
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    casts = {n.name for n in model.graph.node if n.op_type == "Cast"}
    half = float16.convert_float_to_float16(model, keep_io_types=True)
    fixed = _fix_float_casts(half, casts)
    set_metadata(half, {"precision": "fp16", **dict(metadata or {})})
    onnx.checker.check_model(half, full_check=True)
    onnx.save(half, str(dst))
    log.info("fp16: wrote %s (%d Cast node(s) retargeted)", dst, fixed)
    return Path(dst)


def _producers(model: Any) -> dict[str, Any]:
    return {out: node for node in model.graph.node for out in node.output}


def _ancestors_of_outputs(model: Any) -> set[str]:
    prod, seen, stack = _producers(model), set(), [o.name for o in model.graph.output]
    while stack:
        node = prod.get(stack.pop())
        if node is not None and node.name not in seen:
            seen.add(node.name)
            stack.extend(node.input)
    return seen


def default_nodes_to_exclude(model: Any) -> dict[str, list[str]]:
    """Nodes kept in float: the input stem, normalisation/softmax, and the head.

    The stem is the first weighted node (Conv/MatMul/Gemm) downstream of the graph input, the head the last
    weighted node upstream of the output; found from the graph, so no model names are involved.
    Returns ``{"stem": [...], "norm_softmax": [...], "head": [...]}``.
    """
    nodes = list(model.graph.node)
    live = {i.name for i in model.graph.input}
    stem: list[str] = []
    for node in nodes:
        if any(t in live for t in node.input):
            live.update(node.output)
            if node.op_type in WEIGHTED_OPS and not stem:
                stem.append(node.name)
    upstream = _ancestors_of_outputs(model)
    head = next(([n.name] for n in reversed(nodes) if n.op_type in WEIGHTED_OPS and n.name in upstream), [])
    norm = [n.name for n in nodes if n.op_type in HIGH_PRECISION_OPS]
    return {"stem": stem, "norm_softmax": norm, "head": head}


def unshare_initializers(model: Any, node_names: Sequence[str]) -> int:
    """Give each listed node private copies of initializers it shares with other nodes.

    Optimisers deduplicate equal initializers (e.g. zero biases), and the quantizer then rewrites a shared one
    to int8/int32 for every consumer, so an excluded node would read quantized values. Returns copies made.
    """
    users: dict[str, int] = {}
    for node in model.graph.node:
        for i in node.input:
            users[i] = users.get(i, 0) + 1
    inits = {t.name: t for t in model.graph.initializer}
    wanted, copies = set(node_names), 0
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        for k, name in enumerate(node.input):
            if name in inits and users[name] > 1:
                clone = model.graph.initializer.add()
                clone.CopyFrom(inits[name])
                clone.name = f"{name}__{node.name}_float"
                node.input[k] = clone.name
                users[name] -= 1
                copies += 1
    return copies


def _ort_reader(reader: CalibrationReader) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Adapter(CalibrationDataReader):
        def get_next(self) -> dict | None:
            return reader.get_next()

        def rewind(self) -> None:
            reader.rewind()

    reader.rewind()
    return _Adapter()


def _quantize_ort(src: Path, dst: Path, reader: CalibrationReader, method: str, exclude: Sequence[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    quantize_static(str(src), str(dst), _ort_reader(reader), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=methods[method],
                    nodes_to_exclude=list(exclude),
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "DedicatedQDQPair": True})


def _quantize_modelopt(src: Path, dst: Path, reader: CalibrationReader, method: str, exclude: Sequence[str]) -> None:
    moq = importlib.import_module("modelopt.onnx.quantization")
    if method not in ("minmax", "entropy"):
        raise QuantizationError(f"ModelOpt calibrates with 'minmax' or 'entropy', not '{method}'")
    moq.quantize(onnx_path=str(src), quantize_mode="int8", calibration_data=reader.as_dict(),
                 calibration_method="max" if method == "minmax" else "entropy", calibration_eps=["cpu"],
                 nodes_to_exclude=list(exclude), output_path=str(dst))


def _pre_process(src: Path, dst: Path) -> None:
    """ORT's quant_pre_process; without symbolic shape inference when that crashes on the graph.

    ORT's symbolic shape inference fails on some transformer graphs (e.g. HuBERT-ECG's dynamo export raises a
    TypeError inside symbolic_shape_infer); ONNX shape inference is enough there because every dim but batch is fixed.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst))
    except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as exc:
        log.warning("int8: ORT symbolic shape inference failed (%s: %s); retrying with ONNX shape inference only",
                    type(exc).__name__, exc)
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def pick_tool(tool: str = "auto") -> str:
    """``modelopt`` when ``modelopt.onnx.quantization`` imports (TensorRT-style placement), else ``ort``."""
    if tool not in QUANT_TOOLS:
        raise QuantizationError(f"unknown quantization tool '{tool}'; known: {list(QUANT_TOOLS)}")
    if tool != "auto":
        return tool
    try:
        found = importlib.util.find_spec("modelopt.onnx.quantization") is not None
    except ModuleNotFoundError:
        found = False
    return "modelopt" if found else "ort"


def quantize_int8(src: str | Path, dst: str | Path, reader: CalibrationReader | None, *, method: str = "minmax",
                  keep_float: Sequence[str] | None = None, tool: str = "auto",
                  metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Static INT8 QDQ (symmetric, per-channel weights) calibrated on ``reader``'s windows.

    Args:
        src, dst: fp32 ONNX in, QDQ ONNX out.
        reader: real calibration windows; None raises (no random scales, ever).
        method: ``minmax``, ``entropy`` or ``percentile``.
        keep_float: node names to keep in float; None = default_nodes_to_exclude (stem, norms, softmax, head).
        tool: ``auto`` / ``ort`` / ``modelopt``.

    Returns: provenance dict (tool, method, excluded nodes, Q/DQ counts, calibration provenance).
    """
    import onnx

    if reader is None:
        raise QuantizationError("int8 needs calibration windows (a CalibrationReader built from real, preprocessed "
                                "windows); refusing to quantize with random scales. Pass calib=... or drop 'int8'.")
    if method not in CALIB_METHODS:
        raise QuantizationError(f"unknown calibration method '{method}'; known: {list(CALIB_METHODS)}")
    tool = pick_tool(tool)
    src, dst = Path(src), Path(dst)
    with tempfile.TemporaryDirectory(prefix="eb-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        if tool == "ort":
            _pre_process(src, pre)
        else:
            pre.write_bytes(src.read_bytes())
        pre_model = onnx.load(str(pre))
        groups = default_nodes_to_exclude(pre_model)
        exclude = [n for g in groups.values() for n in g] if keep_float is None else list(keep_float)
        if unshare_initializers(pre_model, exclude):
            onnx.save(pre_model, str(pre))
        (_quantize_ort if tool == "ort" else _quantize_modelopt)(pre, dst, reader, method, exclude)
    model = onnx.load(str(dst))
    set_metadata(model, {"precision": "int8", **dict(metadata or {})})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(dst))
    counts = {op: sum(n.op_type == op for n in model.graph.node) for op in ("QuantizeLinear", "DequantizeLinear")}
    log.info("int8: wrote %s with %s (%s), %d node(s) kept in float", dst, tool, method, len(exclude))
    return {"tool": tool, "method": method, "symmetric": True, "per_channel_weights": True,
            "kept_float": exclude if keep_float is not None else groups, "qdq_nodes": counts,
            "calibration": reader.provenance}
