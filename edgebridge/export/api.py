"""The export stage as three library calls: ``export_bundle`` (a model in memory), ``export_run`` (a training run
directory), ``verify_bundle`` (re-check a bundle on any machine). ``edgebridge export|verify`` call these.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import logging
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebridge.calibration.reader import DEFAULT_CALIB_COUNT, CalibrationReader, stratified_indices
from edgebridge.export import bundle as bundle_mod
from edgebridge.export.formats import DEFAULT_MAX_BATCH, PRECISIONS, validate_precisions
from edgebridge.export.parity import INT8_MAX_DROP_PT, ParityError, check_parity, compare, int8_gate, task_metrics
from edgebridge.export.quantize import QuantizationError, quantize_int8, to_fp16

log = logging.getLogger(__name__)

#: Held-out windows stored in the bundle for verify/bench: enough for a stable argmax agreement, small on disk.
DEFAULT_N_CHECK = 48
#: Test windows the int8 gate is judged on in ``export_run`` (a 1-point threshold needs hundreds, not dozens).
DEFAULT_N_GATE = 2000
PACKAGES = ("torch", "onnx", "onnxscript", "onnxruntime", "onnxconverter-common", "numpy", "scipy", "nvidia-modelopt")


@dataclass
class CheckWindows:
    """Held-out windows shipped with the bundle (new modality, preprocessed, labelled).

    Shapes: x_new (N, C, T); labels (N,); x_old (N, C_old, T_old) or None (for the PyTorch reference path);
    raw_new (N, C, T_native) or None, at ``raw_fs_hz``.
    """

    x_new: np.ndarray
    labels: np.ndarray
    x_old: np.ndarray | None = None
    subjects: np.ndarray | None = None
    raw_new: np.ndarray | None = None
    raw_fs_hz: float | None = None
    provenance: dict[str, Any] | None = None

    @classmethod
    def from_paired(cls, windows: Any, n: int = DEFAULT_N_CHECK, seed: int = 0, split: str = "test") -> CheckWindows:
        """Stratified (subject, class) windows of a PairedWindows split."""
        labelled = np.flatnonzero(np.asarray(windows.labels) >= 0)
        idx = labelled[stratified_indices(np.asarray(windows.subjects)[labelled],
                                          np.asarray(windows.labels)[labelled], n, seed)]
        if idx.size == 0:
            raise ValueError(f"split {split!r} has no labelled windows for the bundle's check set")
        items = [windows.get(int(i)) for i in idx]
        raws = [windows.raw_new(int(i)) for i in idx]
        same = len({r.shape for r in raws}) == 1
        return cls(x_new=np.stack([a for a, _, _ in items]), x_old=np.stack([b for _, b, _ in items]),
                   labels=np.array([c for _, _, c in items], np.int64), subjects=np.asarray(windows.subjects)[idx],
                   raw_new=np.stack(raws).astype(np.float32) if same else None,
                   raw_fs_hz=raws[0].shape[1] / windows.spec_new.window_s if same else None,
                   provenance={"split": split, "seed": seed, "indices": [int(i) for i in idx]})

    def save(self, path: Path, ref_logits: np.ndarray) -> None:
        arrays = {"x_new": self.x_new.astype(np.float32), "labels": self.labels.astype(np.int64),
                  "ref_logits": ref_logits.astype(np.float32)}
        if self.x_old is not None:
            arrays["x_old"] = self.x_old.astype(np.float32)
        if self.subjects is not None:
            arrays["subjects"] = np.asarray(self.subjects).astype(str)
        if self.raw_new is not None:
            arrays["raw_new"] = self.raw_new
            arrays["raw_fs_hz"] = np.float64(self.raw_fs_hz)
        np.savez_compressed(path, **arrays)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _torch_logits(model: Any, x: np.ndarray, batch: int = 16) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + batch])).numpy() for i in range(0, len(x), batch)])


def _evaluate(path: Path, precision: str, check: CheckWindows, ref: np.ndarray, n_classes: int) -> dict[str, Any]:
    from edgebridge.runtime.backends import OrtBackend

    logits = OrtBackend(path, precision=precision).run(check.x_new)
    parity = compare(ref, logits)
    return {"parity": parity, "metrics": task_metrics(logits, check.labels, n_classes)}


def _base_manifest(config: Any, spec: Any, n_classes: int, max_batch: int, source: dict[str, Any] | None) -> dict:
    from edgebridge import __version__

    return {
        "format": bundle_mod.FORMAT_NAME, "format_version": bundle_mod.FORMAT_VERSION,
        "edgebridge_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"new_model": asdict(config.new_model), "old_model": asdict(config.old_model), **(source or {})},
        "positions": {"in_layer": config.in_layer, "out_layer": config.out_layer, "rank": config.rank,
                      "n_prototypes": config.n_prototypes},
        "spec": config.spec_new.to_dict(), "spec_old": config.spec_old.to_dict(),
        "class_names": list(config.class_names),
        "inputs": [{"name": "signal", "shape": [None, *spec.input_shape], "dtype": "float32",
                    "max_batch": max_batch}],
        "outputs": [{"name": "logits", "shape": [None, n_classes], "dtype": "float32"}],
        "packages": package_versions(),
    }


def _make_variant(p: str, stage: Path, fp32_path: Path, calib: CalibrationReader | None, calib_method: str,
                  meta: dict[str, Any]) -> dict[str, Any]:
    """Write the file of precision ``p`` next to the fp32 export; return its manifest entry so far."""
    path = stage / PRECISIONS.get(p).filename
    entry: dict[str, Any] = {"file": path.name}
    if p == "fp16":
        to_fp16(fp32_path, path, meta)
    elif p == "int8":
        entry["quantization"] = quantize_int8(fp32_path, path, calib, method=calib_method, metadata=meta)
    return entry


def _judge(p: str, stage: Path, entries: dict[str, dict[str, Any]], check: tuple[CheckWindows, np.ndarray],
           gate: tuple[CheckWindows, np.ndarray], n_classes: int, max_drop_pt: float, allow_drop: bool) -> None:
    """Parity on the check windows (raises past tolerance), task metrics, and the int8 gate on the gate windows."""
    entry = entries[p]
    res = _evaluate(stage / entry["file"], p, check[0], check[1], n_classes)
    check_parity(p, res["parity"])
    if p in ("fp32", "int8"):
        on_gate = res if gate[0] is check[0] else _evaluate(stage / entry["file"], p, gate[0], gate[1], n_classes)
        entry["gate_metrics"] = {"n": int(len(gate[0].labels)), **on_gate["metrics"]}
    if p == "int8":
        entry["gate"] = int8_gate(entries["fp32"]["gate_metrics"], on_gate["metrics"], on_gate["parity"], max_drop_pt,
                                  allow_drop)
    entry.update(parity=res["parity"].to_dict(), metrics=res["metrics"])
    log.info("%s: max abs %.2e, cosine %.6f, argmax agreement %.3f, balanced accuracy %.4f", p, res["parity"].max_abs,
             res["parity"].cosine, res["parity"].argmax_agreement, res["metrics"]["balanced_accuracy"])


def export_bundle(model: Any, config: Any, out: str | Path, check: CheckWindows, *,
                  calib: CalibrationReader | None = None, precisions: Sequence[str] = ("fp32", "fp16", "int8"),
                  opset: int | None = None, exporter: str = "dynamo", allow_int8_drop: bool = False,
                  int8_max_drop_pt: float = INT8_MAX_DROP_PT, calib_method: str = "minmax",
                  max_batch: int = DEFAULT_MAX_BATCH, source: dict[str, Any] | None = None, trt: bool = False,
                  overwrite: bool = False, gate_windows: CheckWindows | None = None) -> Path:
    """Export a BridgedModel to a verified bundle directory at ``out``.

    Every precision is checked on ``check`` against PyTorch fp32 (fp32 allclose, fp16 cosine, int8 balanced-accuracy
    gate); a failure raises (ParityError / Int8GateError) and nothing is written.

    Args:
        model: BridgedModel (or any (B, C, T) → (B, K) module); config: its BridgeConfig.
        check: held-out labelled windows stored in the bundle.
        calib: real calibration windows; required when ``int8`` is asked for.
        allow_int8_drop: ship int8 past the gate anyway (recorded in the manifest).
        source: extra provenance (run dir, file hashes). trt: also build TensorRT engines here (cache, not bundle).
        gate_windows: labelled windows the int8 gate is judged on (default: ``check``). With a few dozen check
            windows one flipped window moves balanced accuracy by ~2 points, so ``export_run`` gates on the
            whole test split and ships only the few dozen.
    """
    from edgebridge.export.onnx import export_onnx

    precisions = validate_precisions(precisions)
    if "int8" in precisions and calib is None:
        raise QuantizationError("int8 needs calibration windows: pass calib=CalibrationReader(...) built from real "
                                "preprocessed windows, or leave 'int8' out of precisions")
    spec, n_classes = config.spec_new, len(config.class_names)
    meta = {"spec": spec.to_dict(), "class_names": list(config.class_names),
            "format_version": bundle_mod.FORMAT_VERSION}
    ref = _torch_logits(model, check.x_new.astype(np.float32))
    gate = check if gate_windows is None else gate_windows
    ref_gate = ref if gate is check else _torch_logits(model, gate.x_new.astype(np.float32))
    manifest = _base_manifest(config, spec, n_classes, max_batch, source)
    with bundle_mod.staging_dir(out) as stage:
        fp32_path = stage / PRECISIONS.get("fp32").filename
        info = export_onnx(model, spec, fp32_path, n_classes=n_classes, metadata={**meta, "precision": "fp32"},
                           opset=opset, exporter=exporter, max_batch=max_batch)
        manifest.update(opset=info.opset, exporter=info.exporter, calibration=None)
        entries: dict[str, dict[str, Any]] = {}
        for p in precisions:
            entries[p] = _make_variant(p, stage, fp32_path, calib, calib_method, meta)
            _judge(p, stage, entries, (check, ref), (gate, ref_gate), n_classes, int8_max_drop_pt, allow_int8_drop)
            if p == "int8":
                manifest["calibration"] = entries[p]["quantization"]["calibration"]
        manifest["precisions"] = entries
        check.save(stage / bundle_mod.CHECK_WINDOWS, ref)
        manifest["check_windows"] = {"file": bundle_mod.CHECK_WINDOWS, "n": int(len(check.labels)),
                                     "has_old": check.x_old is not None, "has_raw": check.raw_new is not None,
                                     "reference": "PyTorch fp32 logits of the exported module (ref_logits)",
                                     **(check.provenance or {})}
        path = bundle_mod.finalize(stage, out, manifest, overwrite=overwrite)
    log.info("bundle written: %s (%s)", path, ", ".join(precisions))
    if trt:
        build_engines(path)
    return path


def build_engines(path: str | Path, precisions: Sequence[str] | None = None, cache_dir: str | Path | None = None
                  ) -> dict[str, dict[str, Any]]:
    """Build TensorRT engines for a bundle on this machine; one line and no engines when TensorRT is absent."""
    from edgebridge.export.tensorrt import TensorRTUnavailable, build_engine, profile_from_manifest

    manifest = bundle_mod.open_bundle(path)
    profile = profile_from_manifest(manifest)
    results: dict[str, dict[str, Any]] = {}
    for p in precisions or sorted(manifest["precisions"]):
        file = manifest["precisions"][p]["file"]
        try:
            results[p] = build_engine(Path(path) / file, manifest["files"][file]["sha256"], p, profile, cache_dir)
        except TensorRTUnavailable as exc:
            log.warning("TensorRT engines not built: %s (the ONNX bundle is complete)", exc)
            return {q: {"status": "unavailable", "reason": str(exc)} for q in precisions or manifest["precisions"]}
    return results


def _calibration_split(calib: Any) -> str | None:
    """The run split that ``calib`` names (None: calibration comes from a reader or an .npz instead)."""
    if calib is None or (isinstance(calib, str) and calib in ("train", "val", "pair", "test")):
        return calib or "pair"
    return None


def _calibration_for_run(windows: dict[str, Any], calib: Any, spec: Any, n: int) -> CalibrationReader:
    if isinstance(calib, CalibrationReader):
        return calib
    split = _calibration_split(calib)
    if split is not None:
        return CalibrationReader.from_paired(windows[split], n=n, split=split)
    path = Path(calib)
    if path.suffix != ".npz" or not path.is_file():
        raise QuantizationError(f"calib must be a split name, a CalibrationReader or an .npz of preprocessed "
                                f"windows (array 'x', (N, C, T)); got {calib!r}")
    with np.load(path, allow_pickle=False) as data:
        return CalibrationReader(data["x"], spec, {"source": str(path)})


def export_run(run_dir: str | Path, out: str | Path | None = None,
               precisions: Sequence[str] = ("fp32", "fp16", "int8"), calib: Any = None, trt: bool = False,
               opset: int | None = None, allow_int8_drop: bool = False, exporter: str = "dynamo",
               n_check: int = DEFAULT_N_CHECK, n_gate: int = DEFAULT_N_GATE, n_calib: int = DEFAULT_CALIB_COUNT,
               calib_method: str = "minmax", overwrite: bool = True) -> Path:
    """Export the trained bridge of a run directory to ``out`` (default ``<run>/bundle``).

    Check windows: stratified from the run's ``test`` split (the int8 gate uses up to ``n_gate`` test windows);
    calibration (int8): the ``pair`` split unless ``calib`` names another split, an .npz, or passes a
    CalibrationReader.
    """
    from edgebridge.bridge.checkpoint import load_bridged
    from edgebridge.runs import run_splits

    run_dir = Path(run_dir)
    precisions = validate_precisions(precisions)
    model, config = load_bridged(run_dir / "bridge")
    log.info("export: run %s (%s → %s, m=%d, l=%d)", run_dir, config.new_model.backbone, config.old_model.backbone,
             config.in_layer, config.out_layer)
    calib_split = _calibration_split(calib) if "int8" in precisions else None
    windows = run_splits(run_dir, ("test",) + ((calib_split,) if calib_split else ()))  # one read of the data
    test = windows["test"]
    check = CheckWindows.from_paired(test, n=n_check)
    gate = CheckWindows.from_paired(test, n=n_gate) if "int8" in precisions else None
    reader = _calibration_for_run(windows, calib, config.spec_new, n_calib) if "int8" in precisions else None
    bridge_files = {f.name: bundle_mod.sha256_file(f) for f in sorted((run_dir / "bridge").glob("*")) if f.is_file()}
    source = {"run_dir": str(run_dir), "bridge_files": bridge_files}
    return export_bundle(model, config, out or run_dir / "bundle", check, calib=reader, precisions=precisions,
                         opset=opset, exporter=exporter, allow_int8_drop=allow_int8_drop, source=source, trt=trt,
                         overwrite=overwrite, gate_windows=gate, calib_method=calib_method)


class VerificationError(RuntimeError):
    """``verify_bundle`` found a problem; ``report`` holds every figure."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def _onnx_valid(path: Path) -> str:
    try:
        import onnx
    except ImportError:
        return "skipped (onnx not installed; ONNX Runtime loaded it)"
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return "ok"


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Re-check hashes, ONNX validity, and parity/metrics of every precision on the bundle's check windows.

    Returns the report; raises BundleError (tampered/broken files) or VerificationError (numbers off).
    """
    from edgebridge.runtime.backends import OrtBackend

    path = Path(path)
    manifest = bundle_mod.open_bundle(path)
    log.info("verify: %s hashes ok (%d files)", path, len(manifest["files"]))
    check = bundle_mod.load_check_windows(path, manifest)
    n_classes = len(manifest["class_names"])
    report: dict[str, Any] = {"path": str(path), "hashes": "ok", "precisions": {}, "ok": True}
    problems = []
    for p, entry in sorted(manifest["precisions"].items()):
        file = path / entry["file"]
        logits = OrtBackend(file, precision=p).run(check["x_new"])
        parity = compare(check["ref_logits"], logits)
        metrics = task_metrics(logits, check["labels"], n_classes)
        item = {"onnx": _onnx_valid(file), "parity": parity.to_dict(), "metrics": metrics,
                "manifest_balanced_accuracy": entry["metrics"]["balanced_accuracy"]}
        try:
            check_parity(p, parity)
        except ParityError as exc:
            problems.append(str(exc))
        drop_pt = 100 * (entry["metrics"]["balanced_accuracy"] - metrics["balanced_accuracy"])
        if drop_pt > INT8_MAX_DROP_PT:
            problems.append(f"{p}: balanced accuracy {metrics['balanced_accuracy']:.4f} is {drop_pt:.2f} points below "
                            "the exported figure")
        report["precisions"][p] = item
        log.info("verify: %s parity max abs %.2e, argmax agreement %.3f, balanced accuracy %.4f", p,
                 parity.max_abs, parity.argmax_agreement, metrics["balanced_accuracy"])
    if problems:
        report["ok"] = False
        raise VerificationError("bundle verification failed: " + "; ".join(problems), report)
    return report
