"""ORT CPU latency of the exported chain (fp32/fp16/int8) vs PyTorch eager on the paper's evaluation path.

For each model family: export a bundle (same code as ``edgebridge export``), then time, in the same process and
on the same windows, batch-1 ORT CPU inference of each precision (2 intra-op threads, spinning off) against
PyTorch eager running ``hook_injected_forward`` — both FULL models with hooks, which is what the paper's
evaluation executes (torch also on 2 threads). Writes benchmarks/results/export.md and export.json.

Families:
  tiny-quickstart  the trained quickstart run (``--run``; tiny transformer PPG → tiny CNN ECG, synthetic stress
                   labels: balanced accuracy is a real task figure).
  <direction>      a paper direction from configs/ (wesad_ppg2ecg, wesad_ecg2ppg, isruc_eeg2ecg, isruc_ecg2eeg,
                   fog_eeg2emg, fog_emg2eeg) at its own positions, rank and prototype count, random init, with
                   synthetic paired windows in the models' input formats. Random weights, so balanced accuracy is
                   chance-level; argmax agreement with fp32 is what carries information there.
  paper-wesad      HuBERT-ECG small [0..4] → PaPaGei-S [13..18): the mid-depth WESAD chain of earlier reports.

Usage: python benchmarks/export_latency.py [--run runs/quickstart-...] [--rounds 10] [--per-round 5]
       [--families ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgebridge.backbones.base import ClassifierHead
from edgebridge.backbones.registry import get_backbone
from edgebridge.bench import bench_bundle
from edgebridge.bridge.compose import BridgedModel
from edgebridge.bridge.config import BridgeConfig, ModelRef
from edgebridge.bridge.layers import ProtoLowRankBridge
from edgebridge.calibration import CalibrationReader
from edgebridge.data.recordings import get_loader
from edgebridge.data.windows import PairedWindows
from edgebridge.export.api import CheckWindows, export_bundle
from edgebridge.export.bundle import load_check_windows

log = logging.getLogger("export_latency")
RESULTS = Path(__file__).parent / "results"
THREADS = 2
#: The NormWear directions (fog_*) work too but take minutes per export and seconds per reference call.
DEFAULT_FAMILIES = ("tiny-quickstart", "wesad_ppg2ecg", "wesad_ecg2ppg", "isruc_eeg2ecg", "isruc_ecg2eeg")


def quickstart_family(run_dir: Path, out: Path) -> tuple[Path, torch.nn.Module, str]:
    from edgebridge.bridge.checkpoint import load_bridged
    from edgebridge.export.api import export_run

    model, _ = load_bridged(run_dir / "bridge")
    path = export_run(run_dir, out=out, allow_int8_drop=True)
    return path, model, f"tiny transformer PPG → tiny CNN ECG (trained quickstart run {run_dir.name})"


def paper_family(out: Path, seed: int = 0) -> tuple[Path, torch.nn.Module, str]:
    torch.manual_seed(seed)
    new, old = get_backbone("hubert_ecg_small").freeze(), get_backbone("papagei_s").freeze()
    in_layer, out_layer = new.n_blocks // 2, (3 * old.n_blocks) // 4
    classes = ("baseline", "stress", "amusement")
    config = BridgeConfig.for_models(new, old, in_layer, out_layer, rank=4, n_prototypes=16, class_names=classes,
                                     new_ref=ModelRef("hubert_ecg_small"), old_ref=ModelRef("papagei_s"),
                                     prototype_init="randn")
    bridge = ProtoLowRankBridge(config.d_in, config.d_out, config.n_tokens, config.rank, config.n_prototypes)
    torch.nn.init.normal_(bridge.B, std=0.05)
    model = BridgedModel(new, in_layer, bridge, old, out_layer, ClassifierHead(old.probe()[-1].out_dim, classes))
    model.requires_grad_(False).eval()
    recs = list(get_loader("synthetic")(None, n_subjects=6, minutes_per_condition=1.5))
    check_w = PairedWindows(recs[:3], new.spec, old.spec, labelled_only=True)
    calib_w = PairedWindows(recs[3:], new.spec, old.spec)
    check = CheckWindows.from_paired(check_w, n=24, split="synthetic subjects 0-2")
    reader = CalibrationReader.from_paired(calib_w, n=64, split="synthetic subjects 3-5")
    path = export_bundle(model, config, out, check, calib=reader, allow_int8_drop=True)
    return path, model, (f"HuBERT-ECG small [0..{in_layer}] → bridge → PaPaGei-S [{out_layer}..18) + head "
                         f"(random init, 60 s windows)")


def _renamed(rec, specs) -> object:
    """The synthetic recording with each modality's channels renamed to the spec's (same count, other names)."""
    from dataclasses import replace

    signals = dict(rec.signals)
    for spec in specs:
        sig = signals[spec.modality]
        if len(sig.channels) < len(spec.channels):
            raise ValueError(f"synthetic {spec.modality} has {len(sig.channels)} channels, the spec needs "
                             f"{len(spec.channels)}")
        signals[spec.modality] = replace(sig, data=sig.data[:len(spec.channels)], channels=spec.channels)
    return replace(rec, signals=signals)


def config_family(name: str, out: Path, seed: int = 0) -> tuple[Path, torch.nn.Module, str]:
    """A paper direction from configs/NAME.toml at its own positions, rank and prototypes (random init), with
    synthetic paired windows in the models' input formats (channel names mapped, class count matched)."""
    from paper_directions import _models

    cfg, new, old, head, bridge, bcfg = _models(name, "cpu", seed)
    model = BridgedModel(new, cfg.bridge.in_layer, bridge, old, cfg.bridge.out_layer, head)
    model.requires_grad_(False).eval()
    specs = (bcfg.spec_new, bcfg.spec_old)
    modalities = {s.modality for s in specs}
    conditions = ("baseline", "stress", "amusement")[:len(cfg.old.classes)]
    minutes = max(1.5, 2.5 * max(s.window_s for s in specs) / 60)
    recs = [_renamed(r, specs) for r in get_loader("synthetic")(
        None, n_subjects=6, minutes_per_condition=minutes, conditions=conditions,
        include_eeg="eeg" in modalities, include_emg="emg" in modalities)]
    check_w = PairedWindows(recs[:3], bcfg.spec_new, bcfg.spec_old, labelled_only=True)
    calib_w = PairedWindows(recs[3:], bcfg.spec_new, bcfg.spec_old)
    check = CheckWindows.from_paired(check_w, n=24, split="synthetic subjects 0-2")
    reader = CalibrationReader.from_paired(calib_w, n=64, split="synthetic subjects 3-5")
    path = export_bundle(model, bcfg, out, check, calib=reader, allow_int8_drop=True)
    new_block = f"{cfg.new.backbone} {new.blocks_path}[{cfg.bridge.in_layer}]"
    old_block = f"{cfg.old.backbone} {old.blocks_path}[{cfg.bridge.out_layer}]"
    return path, model, f"configs/{name}.toml: {new_block} → bridge → {old_block}.. + head (random init)"


def table(rows: list[dict]) -> str:
    head = ("| family | chain | precision | size MB | ORT CPU p50 / p99 ms (batch 1, 2 thr) | balanced acc. | "
            "argmax agree vs fp32 | speed-up vs PyTorch reference |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['family']} | {r['chain']} | {r['precision']} | {r['size_mb']} | {r['p50']} / {r['p99']} | "
                     f"{r['bacc']} | {r['agree']} | {r['speedup']} |")
    return "\n".join(lines)


def interleaved_p50(contenders: dict[str, Callable[[], object]], rounds: int, per_round: int,
                    before: dict[str, Callable[[], None]]) -> dict[str, dict[str, float]]:
    """Time every contender ``per_round`` calls per round, round by round, so load drift on a shared machine hits
    all of them alike. Returns p50/p99 ms per contender over all timed calls (after one warm-up round)."""
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(rounds + 1):
        for name, fn in contenders.items():
            before.get(name, lambda: None)()
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                if r:
                    times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99)), "n": len(v)}
            for k, v in times.items()}


def measure(path: Path, model: torch.nn.Module, rounds: int, per_round: int) -> dict:
    """Interleaved batch-1 latency of each precision (ORT CPU, THREADS intra-op threads) and of the paper path
    (PyTorch eager, both full models) at 1 and THREADS torch threads; accuracy from ``bench_bundle``."""
    from edgebridge.bridge.compose import hook_injected_forward
    from edgebridge.runtime.backends import OrtBackend

    manifest = json.loads((path / "manifest.json").read_text())
    accuracy = bench_bundle(path, batch_sizes=(1,), providers=["cpu"], threads=THREADS, iters=3, warmup=1,
                            reference_model=model, reference_iters=2)
    check = load_check_windows(path, manifest)
    x_new, x_old = torch.from_numpy(check["x_new"][:1]), torch.from_numpy(check["x_old"][:1])
    parts = (model.prefix.backbone, model.prefix.in_layer, model.bridge, model.suffix.backbone, model.suffix.out_layer,
             model.head)
    def paper_path() -> object:
        with torch.inference_mode():
            return hook_injected_forward(*parts, x_new, x_old)

    contenders: dict[str, Callable[[], object]] = {}
    before: dict[str, Callable[[], None]] = {}
    for threads in (1, THREADS):
        name = f"PyTorch eager, both full models, {threads} thread{'s' if threads > 1 else ''}"
        contenders[name] = paper_path
        before[name] = lambda t=threads: torch.set_num_threads(t)
    backends = {}
    for p in ("fp32", "fp16", "int8"):
        # ORT's default idle spinning, as torch's OpenMP threads spin by default: equal footing
        backends[p] = OrtBackend(path / manifest["precisions"][p]["file"], precision=p, threads=THREADS)
        contenders[p] = lambda b=backends[p], x=check["x_new"][:1]: b.run(x)
    timing = interleaved_p50(contenders, rounds, per_round, before)
    torch.set_num_threads(THREADS)
    return {"timing": timing, "accuracy": accuracy, "precisions": manifest["precisions"],
            "int8_uint8_activations": backends["int8"].uint8_activations}


def rows_for(family: str, chain: str, result: dict) -> list[dict]:
    timing, accuracy, precisions = result["timing"], result["accuracy"], result["precisions"]
    refs = [k for k in timing if k.startswith("PyTorch")]
    ref = min(refs, key=lambda k: timing[k]["p50_ms"])
    rows = []
    for i, name in enumerate(refs):
        ratio = timing[ref]["p50_ms"] / timing[name]["p50_ms"]
        rows.append({"family": family, "chain": chain if i == 0 else "", "precision": name, "size_mb": "—",
                     "p50": f"{timing[name]['p50_ms']:.2f}", "p99": f"{timing[name]['p99_ms']:.2f}",
                     "bacc": f"{accuracy['reference']['balanced_accuracy']:.4f}", "agree": "—",
                     "speedup": "reference" if name == ref else f"{ratio:.2f}×"})
    for p in ("fp32", "fp16", "int8"):
        m = precisions[p]
        gate = " (gate failed, shipped with allow_int8_drop)" if p == "int8" and not m["gate"]["passed"] else ""
        rows.append({"family": family, "chain": "", "precision": p + gate,
                     "size_mb": f"{accuracy[p]['size_bytes'] / 1e6:.2f}", "p50": f"{timing[p]['p50_ms']:.2f}",
                     "p99": f"{timing[p]['p99_ms']:.2f}", "bacc": f"{accuracy[p]['balanced_accuracy']:.4f}",
                     "agree": f"{m['parity']['argmax_agreement']:.3f}",
                     "speedup": f"{timing[ref]['p50_ms'] / timing[p]['p50_ms']:.1f}×"})
    speedup = timing[ref]["p50_ms"] / timing["int8"]["p50_ms"]
    drop = accuracy["fp32"]["balanced_accuracy"] - accuracy["int8"]["balanced_accuracy"]
    met = speedup >= 5 and drop <= 0.01
    rows[-1]["speedup"] += f" (target ≥ 5× and ≤ 1 pt drop: {'met' if met else 'NOT met'})"
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="trained run dir for the tiny-quickstart family")
    ap.add_argument("--families", nargs="+", default=list(DEFAULT_FAMILIES),
                    help="tiny-quickstart, paper-wesad, or a direction in configs/ (e.g. fog_emg2eeg)")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds (each contender once per round)")
    ap.add_argument("--per-round", type=int, default=5, help="timed calls per contender per round")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript", "edgebridge.bench"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(THREADS)
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for fam in args.families:
            t0 = time.time()
            if fam == "tiny-quickstart":
                if args.run is None:
                    log.warning("tiny-quickstart needs --run (a trained run dir); skipped")
                    continue
                path, model, chain = quickstart_family(args.run, Path(tmp) / fam)
            elif fam == "paper-wesad":
                path, model, chain = paper_family(Path(tmp) / fam)
            else:
                path, model, chain = config_family(fam, Path(tmp) / fam)
            result = measure(path, model, args.rounds, args.per_round)
            raw[fam] = {"chain": chain, **result, "export_and_bench_s": time.time() - t0}
            rows += rows_for(fam, chain, result)
            timing = result["timing"]
            ref_ms = min(v["p50_ms"] for k, v in timing.items() if k.startswith("PyTorch"))
            log.info("%s: int8 is %.1f× faster than the faster PyTorch reference (p50 %.2f vs %.2f ms)", fam,
                     ref_ms / timing["int8"]["p50_ms"], timing["int8"]["p50_ms"], ref_ms)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "export.json").write_text(json.dumps(raw, indent=2, default=str))
    import onnxruntime

    md = ["# Export latency: ORT CPU (batch 1) vs the paper's PyTorch evaluation path", "",
          f"Machine: {platform.machine()}, {os.cpu_count()} cores; ONNX Runtime {onnxruntime.__version__} with "
          f"{THREADS} intra-op threads (idle spinning on, as torch's OpenMP); torch {torch.__version__}. "
          "Interleaved timing: "
          f"{args.rounds} rounds × {args.per_round} calls per contender after a warm-up round. "
          "Generated by benchmarks/export_latency.py.", "",
          table(rows), "",
          "Speed-up = the faster PyTorch reference's p50 / this row's p50; every contender is timed round by round in "
          "the same process on the same window, so load on the shared machine hits all alike. The PyTorch reference "
          "runs both FULL models (hook_injected_forward), as the paper's evaluation does; the bundle runs only "
          "f_new[0..m] → bridge → f_old[l..L) → head. int8 on ORT's x86 CPU EP runs with its activations moved to "
          "uint8 at load (exact; edgebridge/runtime/ort_int8.py) — "
          f"{'on' if all(r.get('int8_uint8_activations') for r in raw.values()) else 'NOT on'} in this run. "
          "Balanced accuracy: tiny-quickstart on its synthetic stress labels (check windows); the paper directions are "
          "random-init, so chance-level by construction — read their argmax agreement with fp32 instead.", "",
          "Why int8 stays under 5× on this CPU: where the prefix is a whole foundation model (wesad_ppg2ecg, "
          "isruc_eeg2ecg, isruc_ecg2eeg) slicing removes only 7–21% of the paper path's MACs, 53% for "
          "wesad_ecg2ppg (paper_directions.md), so int8 would have to beat PyTorch's fp32 oneDNN kernels by "
          "2.4–4.7× on the same work. ORT 1.32's U8S8 (AVX-512 VNNI) kernels run these chains 1.1–2× faster "
          "than its own fp32; the float islands kept on purpose (stem, norms, GELU) and the Q/DQ at their edges"
          " take about a third of the int8 time, and on LaBraM's 181-token attention ORT's fused QLinearSoftmax"
          " costs 6.2 ms per window against 1.3 ms for the float Softmax (profiled). fp16 is slower than fp32 "
          "on ORT's CPU EP, which has no fp16 kernels: fp16 is the GPU/TensorRT format. TensorRT rows are "
          "absent because no machine here has TensorRT.", ""]
    (RESULTS / "export.md").write_text("\n".join(md))
    log.info("wrote %s", RESULTS / "export.md")


if __name__ == "__main__":
    main()
