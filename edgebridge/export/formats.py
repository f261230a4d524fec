"""Export formats and precisions as tables, plus argument validation (Ultralytics' export table, made strict).

A flag the chosen format does not use is an error, not a silent no-op: ``--workspace-mib 512`` without
``--trt`` would otherwise look like it did something.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgebridge.registry import Registry

#: Opset the ONNX files are exported at unless ``--opset`` says otherwise: native LayerNormalization (≥17) and
#: native Gelu (≥20; below it GELU is five elementwise ops that ORT 1.32 does not fuse back, 2.5 ms of a 19 ms
#: int8 chain), and the top of every TensorRT 10.x parser range (JetPack 6). JetPack 5 (TRT 8.5) needs 17.
DEFAULT_OPSET = 20
#: Highest opset each TensorRT major's ONNX parser accepts (reference/edge_deploy.md §1).
MAX_OPSET_BY_TRT = {8: 17, 10: 20, 11: 25}
#: Largest batch of the exported dynamic batch dim recorded in the manifest (TensorRT profile max).
DEFAULT_MAX_BATCH = 64
#: Example batch of the export. Must be ≥ 2: a batch-1 example silently fixes the batch dim (stack_check §4.1).
EXPORT_EXAMPLE_BATCH = 2
EXPORTERS = ("dynamo", "torchscript")


class ExportArgError(ValueError):
    """An export argument is unknown, unsupported by the format, or has a bad value."""


@dataclass(frozen=True)
class Precision:
    """One numeric variant of the chain shipped in a bundle.

    Attributes:
        name: ``fp32`` / ``fp16`` / ``int8``.
        filename: file inside the bundle.
        needs_calibration: refuses to build without a CalibrationReader (never random scales).
        parity: how it is gated against PyTorch fp32: ``allclose``, ``cosine`` or ``task`` (metric delta).
    """

    name: str
    filename: str
    needs_calibration: bool
    parity: str


PRECISIONS: Registry[Precision] = Registry("precision")
for _p in (Precision("fp32", "model.fp32.onnx", False, "allclose"),
           Precision("fp16", "model.fp16.onnx", False, "cosine"),
           Precision("int8", "model.int8.onnx", True, "task")):
    PRECISIONS.add(_p.name, _p)

ONNX_ARGS = frozenset({"out", "precisions", "calib", "opset", "exporter", "allow_int8_drop", "max_batch",
                       "n_check", "int8_max_drop_pt", "calib_method"})
TRT_ARGS = frozenset({"workspace_mib", "cache_dir", "timing_cache"})


@dataclass(frozen=True)
class Format:
    """A row of the format table: what an export produces and which arguments it reads."""

    name: str
    suffix: str
    args: frozenset[str]
    needs_gpu: bool
    description: str


FORMATS: Registry[Format] = Registry("export format")
FORMATS.add("onnx", Format("onnx", ".onnx", ONNX_ARGS, False, "ONNX bundle: fp32 (+ fp16, int8 QDQ), runs on ORT"))
FORMATS.add("tensorrt", Format("tensorrt", ".engine", ONNX_ARGS | TRT_ARGS, True,
                               "ONNX bundle plus TensorRT engines built on this machine (never shipped)"))


def validate_args(fmt: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Reject arguments the format does not read, and bad values; return the arguments unchanged.

    Args:
        fmt: a FORMATS name.
        args: the arguments the user set explicitly (leave out those left at their defaults).
    """
    spec = FORMATS.get(fmt)
    extra = sorted(set(args) - spec.args)
    if extra:
        raise ExportArgError(f"argument(s) {extra} do not apply to format '{fmt}'; it accepts {sorted(spec.args)}")
    if "precisions" in args:
        validate_precisions(args["precisions"])
    if args.get("exporter") is not None and args["exporter"] not in EXPORTERS:
        raise ExportArgError(f"unknown exporter '{args['exporter']}'; known: {list(EXPORTERS)}")
    opset = args.get("opset")
    if opset is not None and not (isinstance(opset, int) and 13 <= opset <= 25):
        raise ExportArgError(f"opset must be an integer in 13..25 (QDQ per-channel needs ≥13), got {opset!r}")
    max_batch = args.get("max_batch")
    if max_batch is not None and not (isinstance(max_batch, int) and max_batch >= EXPORT_EXAMPLE_BATCH):
        raise ExportArgError(f"max_batch must be an integer ≥ {EXPORT_EXAMPLE_BATCH}, got {max_batch!r}")
    return dict(args)


def validate_precisions(precisions: Iterable[str]) -> tuple[str, ...]:
    """Known names, no repeats, and fp32 always first: every other precision is checked against it."""
    out = tuple(precisions)
    for p in out:
        PRECISIONS.get(p)
    if len(set(out)) != len(out):
        raise ExportArgError(f"precisions repeat: {list(out)}")
    if "fp32" not in out:
        raise ExportArgError("precisions must include 'fp32': the other precisions are gated against it")
    return ("fp32", *[p for p in out if p != "fp32"])
