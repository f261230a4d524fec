"""Run the bundle's symmetric int8 QDQ graph on ONNX Runtime's x86 CPU kernels at full speed.

The bundle's ``model.int8.onnx`` is S8S8 with zero-point 0 (what TensorRT requires). ONNX Runtime's x86 integer
kernels are U8S8 (uint8 activations, int8 weights); its own S8→U8 pass (``QDQS8ToU8Transformer``) converts only
some Q/DQ pairs, which leaves mixed-type groups that fall back to float ops dequantizing their weights on every
run. Measured on the paper WESAD chain (ORT 1.32, 2 threads, AVX-512 VNNI): 287 DequantizeLinear per run, 72 ms;
with every activation moved to uint8 all 58 Conv/MatMul groups fuse to QLinear kernels: 19 ms.

The same holds for the int8 constants the quantizer gives element-wise ops (the bias Add after each MatMul, scale
Muls): with uint8 activations beside them the Add/Mul groups mix types and stay float too, so they move as well
(then QLinearAdd/QLinearMul fuse; another 2-4 ms of the 19).

The rewrite is exact: an int8 value q with zero-point z and the uint8 value q + 128 with zero-point z + 128
quantize and dequantize every float to the same number (``quantize(x) = clamp(round(x/s) + zp)``; ``dequantize(q)
= (q - zp) * s``). Conv/MatMul/Gemm weights (the S8 of U8S8) and int32 biases are left alone. The file on disk is
never changed.
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

#: Machines whose ORT CPU integer kernels want uint8 activations (ARM's run int8 natively).
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})
#: Ops whose int8 weights stay int8 (the S8 operand of ORT's U8S8 kernels).
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
_SHIFT = 128


def wants_uint8_activations(precision: str | None, providers: list[str], machine: str | None = None) -> bool:
    """True for an int8 graph whose first provider is ORT's CPU EP on an x86 machine."""
    machine = (machine or platform.machine()).lower()
    return precision == "int8" and bool(providers) and providers[0] == "CPUExecutionProvider" \
        and machine in X86_MACHINES


def to_uint8_activations(model: Any) -> int:
    """Move every int8 activation Q/DQ pair of ``model`` (an onnx ModelProto, edited in place) to uint8.

    An activation pair is a QuantizeLinear whose input is not an initializer, with an int8 zero-point; every
    DequantizeLinear reading its output is moved with it. Int8 constants read only by element-wise ops move too.
    Shifted initializers are private uint8 copies, so one shared with a weight stays int8. Returns the number of
    Q/DQ nodes changed.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    shifted: dict[str, str] = {}

    def shift(node: Any, k: int) -> None:
        name = node.input[k]
        if name not in shifted:
            shifted[name] = _add_shifted_copy(graph, inits[name])
        node.input[k] = shifted[name]

    moved_outputs: set[str] = set()
    changed = 0
    for node in graph.node:
        if _is_default_domain(node, "QuantizeLinear") and node.input[0] not in inits \
                and len(node.input) > 2 and _is_int8(inits, node.input[2]):
            shift(node, 2)
            moved_outputs.add(node.output[0])
            changed += 1
    for node in graph.node:
        if not _is_default_domain(node, "DequantizeLinear"):
            continue
        if node.input[0] in moved_outputs:
            if len(node.input) < 3 or not _is_int8(inits, node.input[2]):
                raise ValueError(f"DequantizeLinear '{node.name}' reads an int8 activation without an int8 "
                                 "zero-point initializer; cannot move it to uint8")
            shift(node, 2)
            changed += 1
        elif _is_int8(inits, node.input[0]) and len(node.input) > 2 and _is_int8(inits, node.input[2]) \
                and not readers.get(node.output[0], set()) & WEIGHTED_OPS:
            shift(node, 0)
            shift(node, 2)
            changed += 1
    _retype_value_info(model, moved_outputs)
    _drop_unused(graph, set(shifted))
    return changed


def _is_default_domain(node: Any, op_type: str) -> bool:
    return node.op_type == op_type and node.domain in ("", "ai.onnx")


def _is_int8(inits: dict[str, Any], name: str) -> bool:
    from onnx import TensorProto

    return name in inits and inits[name].data_type == TensorProto.INT8


def _add_shifted_copy(graph: Any, tensor: Any) -> str:
    """Append ``tensor`` + 128 as a uint8 initializer; returns its name."""
    from onnx import numpy_helper

    value = numpy_helper.to_array(tensor).astype(np.int16) + _SHIFT
    copy = numpy_helper.from_array(value.astype(np.uint8), f"{tensor.name}__u8")
    graph.initializer.append(copy)
    return copy.name


def _drop_unused(graph: Any, names: set[str]) -> None:
    """Remove the int8 originals no node reads any more (ORT warns about each one otherwise)."""
    used = {i for node in graph.node for i in node.input}
    keep = [t for t in graph.initializer if t.name not in names or t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _retype_value_info(model: Any, names: set[str]) -> None:
    """Shape-inference records of the moved Q outputs must say uint8, or ORT rejects the graph."""
    from onnx import TensorProto

    for info in (*model.graph.value_info, *model.graph.output):
        if info.name in names:
            info.type.tensor_type.elem_type = TensorProto.UINT8


def uint8_model_bytes(path: str) -> tuple[bytes, int]:
    """The ONNX file at ``path`` with its activations moved to uint8, serialised for InferenceSession."""
    import onnx

    model = onnx.load(path)
    changed = to_uint8_activations(model)
    return model.SerializeToString(), changed
