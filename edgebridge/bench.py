"""Latency/throughput/accuracy benchmark of a bundle (``edgebridge bench``), against the paper's PyTorch path.

Each precision runs on each ONNX Runtime provider that really loads here (a provider that silently falls back to
CPU is reported as skipped, never as a GPU figure), at batch 1 and a larger batch, on the bundle's own check
windows. The ``reference`` entry is PyTorch eager running ``hook_injected_forward`` — both FULL models with
hooks, which needs the paired old-modality windows (stored in the bundle) and the run's models.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgebridge.export.bundle import load_check_windows, open_bundle
from edgebridge.metrics import classification_metrics

log = logging.getLogger(__name__)

DEFAULT_ITERS, DEFAULT_WARMUP = 100, 10
GPU_PROVIDERS = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "tensorrt"}


def time_calls(fn: Callable[[], Any], batch: int, iters: int = DEFAULT_ITERS, warmup: int = DEFAULT_WARMUP
               ) -> dict[str, float]:
    """Wall-clock per call after ``warmup`` calls: p50/p99/mean in ms and windows per second."""
    for _ in range(warmup):
        fn()
    times = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    ms = times * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "throughput_per_s": float(batch / times.mean()), "batch": batch,
            "iters": iters}


def _tile(x: np.ndarray, batch: int) -> np.ndarray:
    return np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))


def _balanced_accuracy(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, labels: np.ndarray,
                       n_classes: int, batch: int = 16) -> float:
    logits = np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)])
    return classification_metrics(labels, logits.argmax(1), n_classes)["balanced_accuracy"]


def providers_here() -> list[str]:
    """``cpu`` plus the GPU providers this ONNX Runtime build lists (each is checked again when loaded)."""
    import onnxruntime as ort

    return ["cpu", *[alias for name, alias in GPU_PROVIDERS.items() if name in ort.get_available_providers()]]


def _bench_precision(path: Path, manifest: dict, precision: str, check: dict, providers: Sequence[str],
                     batch_sizes: Sequence[int], threads: int | None, iters: int, warmup: int) -> dict[str, Any]:
    from edgebridge.runtime.backends import BackendError, OrtBackend

    entry = manifest["precisions"][precision]
    out: dict[str, Any] = {"file": entry["file"], "size_bytes": (path / entry["file"]).stat().st_size,
                           "providers": {}}
    for prov in providers:
        try:
            backend = OrtBackend(path / entry["file"], provider=prov, precision=precision, threads=threads,
                                 spinning=False)
        except BackendError as exc:
            out["providers"][prov] = {"skipped": str(exc)}
            continue
        if prov != "cpu" and backend.provider == "CPUExecutionProvider":
            out["providers"][prov] = {"skipped": f"ONNX Runtime fell back to CPU for {prov}"}
            continue
        stats = {str(b): time_calls(lambda b=b, run=backend.run: run(_tile(check["x_new"], b)), b, iters, warmup)
                 for b in batch_sizes}
        stats["balanced_accuracy"] = _balanced_accuracy(backend.run, check["x_new"], check["labels"],
                                                        len(manifest["class_names"]))
        out["providers"][backend.provider] = stats
        log.info("bench %s on %s: batch %d p50 %.3f ms, p99 %.3f ms", precision, backend.provider, batch_sizes[0],
                 stats[str(batch_sizes[0])]["p50_ms"], stats[str(batch_sizes[0])]["p99_ms"])
    first = next((v for v in out["providers"].values() if "skipped" not in v), None)
    if first is not None:
        b1, bmax = str(batch_sizes[0]), str(batch_sizes[-1])
        out.update(p50_ms=first[b1]["p50_ms"], p99_ms=first[b1]["p99_ms"],
                   throughput_per_s=first[bmax]["throughput_per_s"], balanced_accuracy=first["balanced_accuracy"])
    return out


def _reference_model(manifest: dict, reference_model: Any | None) -> Any:
    if reference_model is not None:
        return reference_model
    run_dir = manifest.get("source", {}).get("run_dir")
    if not run_dir or not (Path(run_dir) / "bridge").is_dir():
        raise FileNotFoundError(f"the run directory {run_dir!r} recorded in the manifest is not available here")
    from edgebridge.bridge.checkpoint import load_bridged

    return load_bridged(Path(run_dir) / "bridge")[0]


def bench_reference(model: Any, check: dict, n_classes: int, batch_sizes: Sequence[int], threads: int | None,
                    iters: int, warmup: int = DEFAULT_WARMUP) -> dict[str, Any]:
    """PyTorch eager ``hook_injected_forward`` (both full models, the paper's evaluation path)."""
    import torch

    from edgebridge.bridge.compose import hook_injected_forward

    if threads is not None:
        torch.set_num_threads(threads)
    parts = (model.prefix.backbone, model.prefix.in_layer, model.bridge, model.suffix.backbone,
             model.suffix.out_layer, model.head)

    def run(x_new: np.ndarray, x_old: np.ndarray) -> np.ndarray:
        return hook_injected_forward(*parts, torch.from_numpy(x_new), torch.from_numpy(x_old)).numpy()

    x_new, x_old = check["x_new"], check["x_old"]
    stats: dict[str, Any] = {str(b): time_calls(lambda b=b: run(_tile(x_new, b), _tile(x_old, b)), b, iters, warmup)
                             for b in batch_sizes}
    logits = np.concatenate([run(x_new[i:i + 16], x_old[i:i + 16]) for i in range(0, len(x_new), 16)])
    b1, bmax = str(batch_sizes[0]), str(batch_sizes[-1])
    return {"path": "hook_injected_forward (both full models, PyTorch eager)", "torch_threads": torch.get_num_threads(),
            "p50_ms": stats[b1]["p50_ms"], "p99_ms": stats[b1]["p99_ms"],
            "throughput_per_s": stats[bmax]["throughput_per_s"],
            "balanced_accuracy": classification_metrics(check["labels"], logits.argmax(1), n_classes)[
                "balanced_accuracy"], "batches": stats}


def bench_bundle(path: str | Path, batch_sizes: Sequence[int] = (1, 16), precisions: Sequence[str] | None = None,
                 providers: Sequence[str] | None = None, threads: int | None = None, iters: int = DEFAULT_ITERS,
                 reference: bool = True, reference_model: Any | None = None, warmup: int = DEFAULT_WARMUP,
                 reference_iters: int | None = None) -> dict[str, Any]:
    """Benchmark every precision of a bundle (and the PyTorch reference) on its check windows.

    Returns JSON-ready ``{precision: {p50_ms, p99_ms, throughput_per_s, balanced_accuracy, size_bytes, providers},
    "reference": {...same figures...} or {"skipped": reason}, "meta": {...}}``; p50/p99 are at the first batch
    size on the first provider that loads.
    """
    path = Path(path)
    manifest = open_bundle(path)
    check = load_check_windows(path, manifest)
    batch_sizes = tuple(sorted(int(b) for b in batch_sizes))
    providers = list(providers or providers_here())
    result: dict[str, Any] = {"meta": {"bundle": str(path), "batch_sizes": list(batch_sizes), "threads": threads,
                                       "iters": iters, "n_check": int(len(check["labels"])),
                                       "machine": platform.machine(), "cpu_count": os.cpu_count(),
                                       "python": platform.python_version()}}
    for p in precisions or list(manifest["precisions"]):
        result[p] = _bench_precision(path, manifest, p, check, providers, batch_sizes, threads, iters, warmup)
    if reference:
        try:
            if "x_old" not in check:
                raise FileNotFoundError("the bundle stores no old-modality check windows")
            model = _reference_model(manifest, reference_model)
            result["reference"] = bench_reference(model, check, len(manifest["class_names"]), batch_sizes, threads,
                                                  reference_iters or iters, min(warmup, 2))
        except (FileNotFoundError, ImportError) as exc:
            log.warning("reference (PyTorch, both full models) skipped: %s", exc)
            result["reference"] = {"skipped": str(exc)}
    return result
