"""The paper's six transfer directions (configs/*.toml): sizes, MACs, latency and training memory per direction.

Per direction, with the real adapters at the paper's input shapes and random init (numbers depend on shapes only):

* parameters: frozen new prefix f_new[0..m] (those the chain actually uses), bridge, frozen old suffix
  f_old[l..L) + linear head;
* MACs per window (batch 1) of edgebridge's sliced ``BridgedModel`` and of the paper's evaluation path
  (``hook_injected_forward``: both FULL models, block-l input replaced by a hook, old-modality window needed),
  counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no compute). On CPU tensors
  FlopCounterMode misses ``scaled_dot_product_attention`` (the CPU flash kernel has no FLOP formula); on meta
  the call falls back to its math path (two bmm), which is counted and equals the analytic 4·T²·d per layer.
  The attention share is also reported from the analytic formula (SDPA input shapes recorded during the pass);
* PyTorch CPU latency at batch 1 (2 threads, eager fp32, ``no_grad``), median after warm-up, the two paths
  interleaved round by round so background load hits both alike;
* peak RSS (``ru_maxrss``) of a subprocess that runs edgebridge's cached trainer (``edgebridge.train.fit``) at the
  paper's batch size 16 on synthetic cached features: it builds the old model only (the new model's sizes come from
  a meta-device copy), so this is what a training process holds.

Run: ``python benchmarks/paper_directions.py`` (≈5–10 min on 2 cores) → benchmarks/results/paper_directions.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DIRECTIONS = ("wesad_ppg2ecg", "wesad_ecg2ppg", "isruc_eeg2ecg", "isruc_ecg2eeg", "fog_eeg2emg", "fog_emg2eeg")
BATCH = 16


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _models(name: str, device: str, seed: int = 0):
    """(cfg, new, old, head, bridge, bcfg) of a config; random init on ``device`` ("meta" allocates nothing)."""
    from edgebridge.backbones import ClassifierHead, get_backbone
    from edgebridge.bridge.checkpoint import make_bridge
    from edgebridge.bridge.config import BridgeConfig, ModelRef
    from edgebridge.config import load_config
    from edgebridge.pipeline import resolve_specs

    cfg = load_config(ROOT / "configs" / f"{name}.toml")
    with torch.device("meta"):  # resolve_specs builds each default model just to read its spec: keep that free
        spec_new, spec_old = resolve_specs(cfg)
    torch.manual_seed(seed)
    with torch.device(device):
        new = get_backbone(cfg.new.backbone, spec=spec_new, **cfg.new.kwargs).freeze()
        old = get_backbone(cfg.old.backbone, spec=spec_old, **cfg.old.kwargs).freeze()
        bcfg = BridgeConfig.for_models(new, old, cfg.bridge.in_layer, cfg.bridge.out_layer, cfg.bridge.rank,
                                       cfg.bridge.n_prototypes, tuple(cfg.old.classes), ModelRef("n"), ModelRef("o"))
        head = ClassifierHead(old.probe()[-1].out_dim, cfg.old.classes).requires_grad_(False).eval()
        bridge = make_bridge(bcfg).eval()
        if device != "meta":
            torch.nn.init.normal_(bridge.B, std=0.05)  # a trained-looking bridge (the zero init is a special case)
    return cfg, new, old, head, bridge, bcfg


# --- parameters and MACs (meta device) ----------------------------------------------------------------------
def _used_params(module: torch.nn.Module, run) -> int:
    """Parameters that receive a gradient from ``run()`` (meta tensors: shapes only, no compute)."""
    for p in module.parameters():
        p.requires_grad_(True)
        p.grad = None
    run().float().sum().backward()
    n = sum(p.numel() for p in module.parameters() if p.grad is not None)
    module.requires_grad_(False)
    return n


class SdpaShapes(TorchFunctionMode):
    """Records analytic FLOPs of every ``F.scaled_dot_product_attention`` call: QKᵀ and A·V, 2 FLOPs per MAC."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.scaled_dot_product_attention:
            q, k = args[0], args[1]
            *batch, n_q, d_k = q.shape
            n_k, d_v = k.shape[-2], args[2].shape[-1]
            self.flops += 2 * int(torch.tensor(batch).prod()) * n_q * n_k * (d_k + d_v)
        return func(*args, **(kwargs or {}))


def _flops(run) -> tuple[int, int]:
    """(all FLOPs counted by FlopCounterMode, analytic SDPA FLOPs) of ``run()`` on meta tensors."""
    from torch.utils.flop_counter import FlopCounterMode

    counter, sdpa = FlopCounterMode(display=False), SdpaShapes()
    with counter, sdpa, torch.no_grad():
        run()
    return counter.get_total_flops(), sdpa.flops


def sizes_and_macs(name: str) -> dict:
    from edgebridge.bridge.compose import BridgedModel, NewPrefix, OldSuffix, hook_injected_forward

    cfg, new, old, head, bridge, bcfg = _models(name, "meta")
    m, l_ = bcfg.in_layer, bcfg.out_layer
    x_new = torch.zeros(1, *new.spec.input_shape, device="meta")
    x_old = torch.zeros(1, *old.spec.input_shape, device="meta")
    prefix, suffix = NewPrefix(new, m), OldSuffix(old, l_)
    z = torch.zeros(1, bcfg.d_in, device="meta")
    n_prefix = _used_params(new, lambda: prefix(x_new))
    tail = torch.nn.ModuleDict({"old": old, "head": head})
    n_suffix = _used_params(tail, lambda: head(old.readout(suffix(bridge(z)))))
    model = BridgedModel(new, m, bridge, old, l_, head).eval()
    sliced, sliced_attn = _flops(lambda: model(x_new))
    hooked, hooked_attn = _flops(lambda: hook_injected_forward(new, m, bridge, old, l_, head, x_new, x_old))
    bridge_flops, _ = _flops(lambda: bridge(z))
    return {"direction": name, "new": cfg.new.backbone, "old": cfg.old.backbone, "m": new.block_name(m),
            "l": old.block_name(l_), "prefix_params": n_prefix, "bridge_params": sum(p.numel() for p in
                                                                                     bridge.parameters()),
            "suffix_head_params": n_suffix, "new_total_params": sum(p.numel() for p in new.parameters()),
            "old_total_params": sum(p.numel() for p in old.parameters()),
            "sliced_macs": sliced / 2, "sliced_attn_macs": sliced_attn / 2, "hooked_macs": hooked / 2,
            "hooked_attn_macs": hooked_attn / 2, "bridge_macs": bridge_flops / 2}


# --- latency (real CPU tensors) -----------------------------------------------------------------------------
@torch.no_grad()
def latency(name: str, rounds: int, warmup: int = 2) -> dict:
    from edgebridge.bridge.compose import BridgedModel, hook_injected_forward

    torch.set_num_threads(2)
    _, new, old, head, bridge, bcfg = _models(name, "cpu")
    model = BridgedModel(new, bcfg.in_layer, bridge, old, bcfg.out_layer, head).eval()
    g = torch.Generator().manual_seed(0)
    x_new, x_old = torch.randn(1, *new.spec.input_shape, generator=g), torch.randn(1, *old.spec.input_shape,
                                                                                 generator=g)
    paths = {"sliced": lambda: model(x_new),
             "hooked": lambda: hook_injected_forward(new, bcfg.in_layer, bridge, old, bcfg.out_layer, head, x_new,
                                                     x_old)}
    torch.testing.assert_close(paths["sliced"](), paths["hooked"](), atol=1e-4, rtol=1e-4)
    times: dict[str, list[float]] = {k: [] for k in paths}
    for r in range(warmup + rounds):
        for key, fn in paths.items():
            t0 = time.perf_counter()
            fn()
            if r >= warmup:
                times[key].append((time.perf_counter() - t0) * 1e3)
    return {f"{k}_ms": statistics.median(v) for k, v in times.items()} | {"rounds": rounds}


# --- training memory (subprocess) ---------------------------------------------------------------------------
def train_memory(name: str, n_windows: int, steps: int) -> dict:
    """Runs inside a fresh process: old model only + synthetic cached features, edgebridge's trainer at batch 16."""
    from edgebridge.backbones import get_backbone
    from edgebridge.bridge.checkpoint import make_bridge
    from edgebridge.bridge.compose import OldSuffix
    from edgebridge.train import LOSSES, TrainConfig, fit

    torch.set_num_threads(2)
    cfg, _, meta_old, _, _, bcfg = _models(name, "meta")  # the new model never leaves the meta device here
    last = meta_old.probe()[-1]
    torch.manual_seed(0)
    old = get_backbone(cfg.old.backbone, spec=bcfg.spec_old, **cfg.old.kwargs).freeze()

    g = torch.Generator().manual_seed(0)
    z = torch.randn(n_windows, bcfg.d_in, generator=g).numpy()
    target = torch.randn(n_windows, last.out_tokens * last.out_dim, generator=g).numpy()
    suffix, bridge = OldSuffix(old, bcfg.out_layer), make_bridge(bcfg)
    rss_before = _peak_rss_mb()
    cfg = TrainConfig(epochs=1, batch_size=BATCH, lr=1e-4, schedule="constant", warmup_steps=0, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fit(bridge, suffix, (z, target), (z[:BATCH], target[:BATCH]), cfg, tmp, on_best=lambda b: None,
            progress=False)
        fit_s = time.perf_counter() - t0
    opt, loss_fn, step_s = torch.optim.Adam(bridge.parameters(), lr=1e-4), LOSSES.get("cosine"), []
    zb, tb = torch.from_numpy(z[:BATCH]), torch.from_numpy(target[:BATCH])
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = loss_fn(suffix.last_btd(bridge(zb)), tb)  # canonical layout, as train.fit compares
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step_s.append(time.perf_counter() - t0)
    return {"rss_before_train_mb": rss_before, "peak_rss_mb": _peak_rss_mb(), "step_s": statistics.median(step_s),
            "fit_s": fit_s, "n_windows": n_windows, "cached_mb": (z.nbytes + target.nbytes) / 2**20}


def _sub(args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--directions", nargs="*", default=list(DIRECTIONS), choices=DIRECTIONS)
    p.add_argument("--rounds", type=int, default=20, help="latency rounds per path (NormWear directions: a quarter)")
    p.add_argument("--train-windows", type=int, default=48, help="synthetic cached windows for the memory run")
    p.add_argument("--out", default=str(RESULTS / "paper_directions.md"))
    p.add_argument("--mode", choices=["train"], help=argparse.SUPPRESS)
    p.add_argument("--direction", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.mode == "train":
        print(json.dumps(train_memory(a.direction, a.train_windows, steps=3)))
        return
    rows, load_start = [], os.getloadavg()[0]
    for name in a.directions:
        t0 = time.perf_counter()
        row = sizes_and_macs(name)
        heavy = "normwear" in (row["new"], row["old"])
        row |= latency(name, max(3, a.rounds // 4) if heavy else a.rounds)
        row |= _sub(["--mode", "train", "--direction", name, "--train-windows",
                     str(a.train_windows // 2 if heavy else a.train_windows)])
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
    a.load = (load_start, os.getloadavg()[0])
    text = report(rows, a)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    print(text)


def _m(x: float) -> str:
    return f"{x / 1e6:,.1f} M" if x < 1e9 else f"{x / 1e9:,.2f} G"


def report(rows: list[dict], a: argparse.Namespace) -> str:
    lines = ["# The paper's six directions: sizes, MACs, CPU latency, training memory", "",
             "Models: the real adapters at the configs' input shapes, random init (shapes decide every number here). "
             "Latency: batch 1, PyTorch eager fp32, `torch.set_num_threads(2)`, median of interleaved rounds after 2 "
             "warm-ups, on a 2-core CPU shared with other jobs (medians, not means). MACs = FLOPs / 2 from "
             "`FlopCounterMode` on the meta device (SDPA counted through its math path; the attention share is "
             "also given analytically in brackets, 4·T²·d FLOPs per SDPA call, because FlopCounterMode on CPU "
             "tensors counts none of it; LaBraM's explicit q·kᵀ is counted on any device and is not in brackets).", "",
             "| direction | new block m → old block l | frozen prefix | bridge | frozen suffix + head | "
             "MACs sliced (of which SDPA) | MACs paper path (of which SDPA) | latency sliced / paper path (ms) | "
             "speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['direction']} | {r['new']} {r['m']} → {r['old']} {r['l']} | {r['prefix_params']:,} | "
            f"**{r['bridge_params']:,}** | {r['suffix_head_params']:,} | {_m(r['sliced_macs'])} "
            f"({_m(r['sliced_attn_macs'])}) | {_m(r['hooked_macs'])} ({_m(r['hooked_attn_macs'])}) | "
            f"{r['sliced_ms']:.1f} / {r['hooked_ms']:.1f} (n={r['rounds']}) | {r['hooked_ms'] / r['sliced_ms']:.2f}x |")
    lines += ["", "Bridge training with edgebridge's cached trainer at the paper's batch size 16 (a separate process "
              "per direction that holds the old model only; synthetic cached features):", "",
              "| direction | RSS before training (MB) | peak RSS (MB) | step at batch 16 (s) | cached arrays (MB) | "
              "bridge MACs / window |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['direction']} | {r['rss_before_train_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['step_s']:.3f} | {r['cached_mb']:.0f} ({r['n_windows']} windows) | "
                     f"{_m(r['bridge_macs'])} |")
    lines += ["", "Notes:",
              "- *frozen prefix* counts the new model's parameters the chain uses (embedding + blocks 0..m; "
              "pretraining heads, final norms and unused blocks are excluded); *suffix + head* = old blocks l..L plus "
              "the linear head. Measured as the parameters that receive a gradient (meta device).",
              "- *paper path* = `edgebridge.bridge.compose.hook_injected_forward`: the upstream evaluation, both full "
              "models, the old one run on the paired old-modality window with block l's input replaced by a hook. "
              "The sliced `BridgedModel` runs f_new[0..m] → pool → bridge → f_old[l..L) → head on the new modality "
              "alone; both give the same logits (checked to 1e-4 before timing).",
              "- Peak RSS includes Python, torch and the old model (random init, fp32) and the synthetic cache. The "
              "loss compares the old last block in the canonical (B, N, D) layout, as `train.fit` does.",
              f"- 1-min load average {a.load[0]:.1f} at the start, {a.load[1]:.1f} at the end (2 cores): other jobs "
              "shared the CPU, so absolute times are inflated; each latency ratio compares paths timed side by side.",
              f"- Reproduce: `python benchmarks/paper_directions.py --rounds {a.rounds} --train-windows "
              f"{a.train_windows}` (measured {time.strftime('%Y-%m-%d')}, torch {torch.__version__})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
