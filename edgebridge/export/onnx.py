"""BridgedModel → ONNX: fixed (C, T), dynamic batch, checked, with the SignalSpec and labels inside the file.

The model is prepared the way Ultralytics prepares it (deepcopy, eval, no grads, two dry runs) so that export
never touches the caller's module. The graph's input dims are asserted after export because torch.export
silently fixes the batch dim when the example batch is 1 (reference/stack_check.md §4.1).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgebridge.export.formats import DEFAULT_MAX_BATCH, DEFAULT_OPSET, EXPORT_EXAMPLE_BATCH, EXPORTERS, ExportArgError
from edgebridge.io import sha256_file  # noqa: F401  (re-exported: bundle.sha256_file)
from edgebridge.spec import SignalSpec

log = logging.getLogger(__name__)

INPUT_NAME = "signal"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
META_PREFIX = "edgebridge."


class ExportError(RuntimeError):
    """The exported graph is invalid or not what the manifest would claim."""


@dataclass(frozen=True)
class OnnxInfo:
    """What an exported file holds: names, shapes (``None`` = the dynamic batch dim), opset, exporter."""

    path: Path
    input_name: str
    output_name: str
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]
    opset: int
    exporter: str




def prepare_for_export(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A deep copy in eval mode without gradients, run twice on ``example`` (Ultralytics style).

    Two dry runs fill any lazy state (caches, probed dims) before tracing. Shapes: example (B, C, T).
    """
    prepared = copy.deepcopy(model).eval()
    prepared.requires_grad_(False)
    with torch.no_grad():
        for _ in range(2):
            out = prepared(example)
    log.info("export: input %s -> output %s", tuple(example.shape), tuple(out.shape))
    return prepared


def _assert_eval(model: nn.Module) -> None:
    training = [name or "<root>" for name, m in model.named_modules() if m.training]
    if training:
        raise ExportError(f"modules left in training mode after export: {training[:5]}")


def _export_dynamo(model: nn.Module, example: torch.Tensor, path: Path, opset: int, max_batch: int) -> None:
    batch = torch.export.Dim(BATCH_DIM, min=1, max=max_batch)
    torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_shapes=({0: batch},), external_data=False, opset_version=opset, verbose=False)


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, opset: int, max_batch: int) -> None:
    del max_batch  # the legacy exporter has no bound on dynamic axes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset,
                          dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}})


_EXPORTERS = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


def _dims(value_info: Any) -> tuple[int | None, ...]:
    """Shape of a graph input/output; ``None`` for a symbolic dim."""
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim)


def check_io(model: Any, input_shape: tuple[int, int], n_classes: int) -> tuple[tuple, tuple]:
    """Assert one input ``(batch, C, T)`` and one output ``(batch, K)`` with a symbolic batch dim.

    Returns the (input, output) dims with ``None`` for the batch. Raises ExportError naming the wrong dim.
    """
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ExportError(f"expected 1 input and 1 output, got {[i.name for i in graph.input]} -> "
                          f"{[o.name for o in graph.output]}")
    d_in, d_out = _dims(graph.input[0]), _dims(graph.output[0])
    want_in, want_out = (None, *input_shape), (None, n_classes)
    if d_in != want_in:
        raise ExportError(f"graph input '{graph.input[0].name}' has dims {d_in}, expected {want_in} (None = dynamic "
                          "batch); a batch-1 example or a data-dependent reshape fixes the batch dim")
    if d_out != want_out:
        raise ExportError(f"graph output '{graph.output[0].name}' has dims {d_out}, expected {want_out}")
    return d_in, d_out


def set_metadata(model: Any, metadata: Mapping[str, Any]) -> None:
    """Write ``edgebridge.<key>`` metadata_props (JSON values), replacing earlier values of the same keys."""
    keys = {META_PREFIX + k for k in metadata}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in keys]
    del model.metadata_props[:]
    for k, v in kept:
        model.metadata_props.add(key=k, value=v)
    for k, v in metadata.items():
        model.metadata_props.add(key=META_PREFIX + k, value=json.dumps(v, sort_keys=True))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``edgebridge.*`` metadata_props of an ONNX file, JSON-decoded."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key[len(META_PREFIX):]: json.loads(p.value) for p in model.metadata_props
            if p.key.startswith(META_PREFIX)}


def finalize_onnx(path: Path, input_shape: tuple[int, int], n_classes: int, metadata: Mapping[str, Any]) -> Any:
    """Shape inference, full checker, IO assertion and metadata, then save in place; returns the ModelProto."""
    import onnx

    model = onnx.load(str(path))
    model = onnx.shape_inference.infer_shapes(model, check_type=True)
    onnx.checker.check_model(model, full_check=True)
    check_io(model, input_shape, n_classes)
    set_metadata(model, metadata)
    onnx.save(model, str(path))
    return model


def export_onnx(model: nn.Module, spec: SignalSpec, path: str | Path, *, n_classes: int,
                metadata: Mapping[str, Any] | None = None, opset: int | None = None, exporter: str = "dynamo",
                max_batch: int = DEFAULT_MAX_BATCH) -> OnnxInfo:
    """Export a (B, C, T) → (B, K) model to ONNX with a dynamic batch dim.

    Args:
        model: the deployable chain (not modified: a prepared deep copy is exported).
        spec: input SignalSpec; fixes C and T.
        path: output ``.onnx`` (single file, no external data).
        n_classes: K, asserted on the output.
        metadata: written as ``edgebridge.<key>`` metadata_props (e.g. spec, class_names).
        opset: ONNX opset (default DEFAULT_OPSET).
        exporter: ``dynamo`` (torch.export) or ``torchscript`` (legacy fallback).
        max_batch: upper bound of the dynamic batch dim.

    Shapes: input (batch, C, T) float32 → output (batch, K) float32.
    """
    if exporter not in _EXPORTERS:
        raise ExportArgError(f"unknown exporter '{exporter}'; known: {list(EXPORTERS)}")
    opset = DEFAULT_OPSET if opset is None else opset
    path = Path(path)
    example = torch.randn(EXPORT_EXAMPLE_BATCH, *spec.input_shape, generator=torch.Generator().manual_seed(0))
    prepared = prepare_for_export(model, example)
    _EXPORTERS[exporter](prepared, example, path, opset, max_batch)
    _assert_eval(prepared)
    for extra in path.parent.glob(path.name + ".data"):
        raise ExportError(f"exporter wrote external data {extra}; the bundle needs single-file ONNX")
    proto = finalize_onnx(path, spec.input_shape, n_classes, dict(metadata or {}))
    real_opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    d_in, d_out = check_io(proto, spec.input_shape, n_classes)
    log.info("export: wrote %s (%s exporter, opset %d, %.1f kB)", path, exporter, real_opset,
             path.stat().st_size / 1024)
    return OnnxInfo(path, proto.graph.input[0].name, proto.graph.output[0].name, d_in, d_out, real_opset, exporter)
