"""Bridge training speed and memory: edgebridge's cached trainer vs the paper's naive step, same models, same data.

Models have the shapes of the paper's WESAD PPG→ECG pair (random init; timing depends on shapes only):
new = HuBERT-ECG small (8 × 512-d blocks, 93 tokens), bridge input at block 7; old = PaPaGei-S (18-block 1-D
ResNet, 5.8 M), bridge output into block 11; batch 16.

naive   = what the paper's --mode train runs every step: full old forward (no grad, target), full new forward
          (no grad, hook at block m), bridge, full old forward with the bridge injected by a pre-hook and autograd,
          old-model weights left trainable.
cached  = edgebridge: one no-grad pass caches pooled block-m features and old targets (amortised over the run),
          then every step is bridge → old blocks l..L → loss, in a process that never loads the new model.

Each mode runs in its own subprocess so its peak RSS is its own. Run: ``python benchmarks/train_speed.py``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
NEW, OLD, M, L, BATCH = "hubert_ecg_small", "papagei_s", 7, 11, 16
RANK, N_PROTO, LR = 32, 50, 1e-4


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(name: str, seed: int):
    """Each model from its own seed, so every process gets identical weights whatever it builds first."""
    import torch

    from edgebridge.backbones import get_backbone

    torch.manual_seed(seed)
    return get_backbone(name).freeze()


def _models():

    from edgebridge.backbones import ClassifierHead

    new = _build(NEW, seed=0)
    old = _build(OLD, seed=1)
    head = ClassifierHead(old.probe()[-1].out_dim, ("baseline", "stress", "amusement")).requires_grad_(False).eval()
    return new, old, head


class _Windows:
    """PairedWindows-like view of fixed random model inputs (what features.cached_features consumes)."""

    def __init__(self, n: int, new, old, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.x_new = rng.standard_normal((n, *new.spec.input_shape)).astype(np.float32)
        self.x_old = rng.standard_normal((n, *old.spec.input_shape)).astype(np.float32)

    def __len__(self) -> int:
        return len(self.x_new)

    def batches(self, batch_size: int):
        for i in range(0, len(self), batch_size):
            yield self.x_new[i:i + batch_size], self.x_old[i:i + batch_size], np.zeros(
                len(self.x_new[i:i + batch_size]), np.int64)

    def fingerprint(self) -> str:
        return f"bench-{len(self)}"


def _bridge(new, old):
    import torch

    from edgebridge.bridge.layers import ProtoLowRankBridge

    torch.manual_seed(1)
    d = old.probe()[L]
    return ProtoLowRankBridge(new.probe()[M].out_dim, d.in_dim, d.in_tokens, RANK, N_PROTO)


def _grab(_module, _inputs, output, store: dict) -> None:
    store["m"] = output[0] if isinstance(output, tuple) else output


def _inject(_module, args: tuple, h):
    return (h, *args[1:])


def _warm_up(new, old, data: _Windows) -> None:
    """One untimed no-grad forward of both models: every mode excludes first-call set-up costs alike."""
    import torch

    x_new, x_old, _ = next(data.batches(BATCH))
    with torch.no_grad():
        new(torch.from_numpy(x_new))
        old(torch.from_numpy(x_old))


def mode_naive(n_windows: int, epochs: int) -> dict:
    """The paper's step, line for line in spirit (hooks, full forwards, old weights trainable)."""
    import torch
    import torch.nn.functional as F

    new, old, head = _models()
    old.requires_grad_(True)  # upstream leaves PaPaGei trainable: grads accumulate in its .grad every step
    data, bridge = _Windows(n_windows, new, old), _bridge(new, old)
    opt = torch.optim.Adam(bridge.parameters(), lr=LR)
    _warm_up(new, old, data)
    step_times, losses, t_epoch = [], [], []
    for _epoch in range(epochs):
        t0 = time.perf_counter()
        for x_new, x_old, _ in data.batches(BATCH):
            ts = time.perf_counter()
            x_new, x_old = torch.from_numpy(x_new), torch.from_numpy(x_old)
            opt.zero_grad()
            grabbed = {}
            h1 = new.block_list[M].register_forward_hook(functools.partial(_grab, store=grabbed))
            with torch.no_grad():
                target = old(x_old)
                new(x_new)
            h1.remove()
            z = new.pool(grabbed["m"])
            injected = old.from_btd(bridge(z))
            h2 = old.block_list[L].register_forward_pre_hook(functools.partial(_inject, h=injected))
            pred = old(x_old)
            h2.remove()
            loss = (1 - F.cosine_similarity(pred.flatten(1), target.flatten(1), dim=1)).mean()
            loss.backward()
            opt.step()
            losses.append(float(loss))
            step_times.append(time.perf_counter() - ts)
        t_epoch.append(time.perf_counter() - t0)
    return {"mode": "naive", "median_step_s": float(np.median(step_times)), "epoch_s": float(np.median(t_epoch)),
            "losses": losses, "peak_rss_mb": _peak_rss_mb()}


def mode_cache(n_windows: int, cache_dir: str) -> dict:
    """The one-time no-grad pass (edgebridge.features) over the pair windows."""
    import torch

    from edgebridge.features import cached_features

    new, old, head = _models()
    data = _Windows(n_windows, new, old)
    _warm_up(new, old, data)
    t0 = time.perf_counter()
    feats = cached_features(cache_dir, new, old, head, data, batch_size=BATCH, progress=False)
    seconds = time.perf_counter() - t0
    np.save(Path(cache_dir) / "z.npy", np.asarray(feats.new_pooled[M]))
    np.save(Path(cache_dir) / "target.npy", np.asarray(feats.old_last))
    del torch
    return {"mode": "cache", "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def mode_cached_train(cache_dir: str, epochs: int) -> dict:
    """Training from the cache: only the old model is built; the new model never enters this process."""
    import torch
    import torch.nn.functional as F

    from edgebridge.bridge.compose import OldSuffix
    from edgebridge.bridge.layers import ProtoLowRankBridge

    torch.manual_seed(0)
    old = _build(OLD, seed=1)  # the new model is never built in this process
    z = np.load(Path(cache_dir) / "z.npy", mmap_mode="r")
    target = np.load(Path(cache_dir) / "target.npy", mmap_mode="r")
    torch.manual_seed(1)
    d = old.probe()[L]
    bridge = ProtoLowRankBridge(z.shape[1], d.in_dim, d.in_tokens, RANK, N_PROTO)
    suffix = OldSuffix(old, L)
    opt = torch.optim.Adam(bridge.parameters(), lr=LR)
    with torch.no_grad():  # same untimed warm-up as the other modes (first-call allocator/oneDNN set-up)
        suffix(bridge(torch.from_numpy(np.array(z[:BATCH]))))
    step_times, losses, t_epoch = [], [], []
    for _epoch in range(epochs):
        t0 = time.perf_counter()
        for i in range(0, len(z), BATCH):
            ts = time.perf_counter()
            zb, tb = torch.from_numpy(np.array(z[i:i + BATCH])), torch.from_numpy(np.array(target[i:i + BATCH]))
            pred = suffix.last_btd(bridge(zb))
            loss = (1 - F.cosine_similarity(pred.flatten(1), tb.flatten(1), dim=1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss))
            step_times.append(time.perf_counter() - ts)
        t_epoch.append(time.perf_counter() - t0)
    return {"mode": "cached_train", "median_step_s": float(np.median(step_times)),
            "epoch_s": float(np.median(t_epoch)), "losses": losses, "peak_rss_mb": _peak_rss_mb()}


def _sub(args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark subprocess {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=64, help="paired windows per epoch (64 = 4 steps of 16)")
    p.add_argument("--naive-epochs", type=int, default=2)
    p.add_argument("--cached-epochs", type=int, default=5)
    p.add_argument("--run-epochs", type=int, default=50, help="epochs of the run the cache is amortised over")
    p.add_argument("--json", action="store_true")
    p.add_argument("--mode", choices=["naive", "cache", "cached_train"], help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.mode:
        import torch

        torch.set_num_threads(2)
        result = {"naive": lambda: mode_naive(a.windows, a.naive_epochs),
                  "cache": lambda: mode_cache(a.windows, a.cache_dir),
                  "cached_train": lambda: mode_cached_train(a.cache_dir, a.cached_epochs)}[a.mode]()
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as cache_dir:
        naive = _sub(["--mode", "naive", "--windows", str(a.windows), "--naive-epochs", str(a.naive_epochs)])
        cache = _sub(["--mode", "cache", "--windows", str(a.windows), "--cache-dir", cache_dir])
        cached = _sub(["--mode", "cached_train", "--cache-dir", cache_dir, "--cached-epochs", str(a.cached_epochs)])
    report(a, naive, cache, cached)


def report(a: argparse.Namespace, naive: dict, cache: dict, cached: dict) -> None:
    steps = -(-a.windows // BATCH)
    amortised = cached["epoch_s"] + cache["seconds"] / a.run_epochs
    speedup = naive["epoch_s"] / amortised
    memory_ratio = naive["peak_rss_mb"] / cached["peak_rss_mb"]
    k = min(len(naive["losses"]), len(cached["losses"]))
    loss_gap = float(np.max(np.abs(np.array(naive["losses"][:k]) - np.array(cached["losses"][:k]))))
    summary = {"speedup": speedup, "memory_ratio": memory_ratio, "naive_epoch_s": naive["epoch_s"],
               "cached_epoch_s": cached["epoch_s"], "cache_pass_s": cache["seconds"],
               "cached_epoch_amortised_s": amortised, "naive_step_s": naive["median_step_s"],
               "cached_step_s": cached["median_step_s"], "naive_peak_rss_mb": naive["peak_rss_mb"],
               "cached_train_peak_rss_mb": cached["peak_rss_mb"], "cache_pass_peak_rss_mb": cache["peak_rss_mb"],
               "same_steps_compared": k, "max_loss_difference": loss_gap,
               "final_loss_naive": naive["losses"][k - 1], "final_loss_cached": cached["losses"][k - 1],
               "windows_per_epoch": a.windows, "steps_per_epoch": steps, "run_epochs": a.run_epochs}
    rows = [
        ("median step (s)", f"{naive['median_step_s']:.3f}", f"{cached['median_step_s']:.3f}",
         f"{naive['median_step_s'] / cached['median_step_s']:.1f}x"),
        (f"epoch of {a.windows} windows (s)", f"{naive['epoch_s']:.2f}", f"{cached['epoch_s']:.2f}",
         f"{naive['epoch_s'] / cached['epoch_s']:.1f}x"),
        (f"epoch incl. cache pass / {a.run_epochs} epochs (s)", f"{naive['epoch_s']:.2f}", f"{amortised:.2f}",
         f"**{speedup:.1f}x**"),
        ("peak RSS during training (MB)", f"{naive['peak_rss_mb']:.0f}", f"{cached['peak_rss_mb']:.0f}",
         f"**{memory_ratio:.2f}x** lower"),
        (f"loss after {k} identical steps", f"{naive['losses'][k - 1]:.6f}", f"{cached['losses'][k - 1]:.6f}",
         f"max |diff| over steps {loss_gap:.1e}"),
    ]
    table = "| measure | naive (paper's step) | edgebridge cached | ratio |\n|---|---|---|---|\n" + "\n".join(
        f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows)
    text = (f"# Bridge training speed: cached vs the paper's naive step\n\n"
            f"Models: new = {NEW} (bridge input block {M}), old = {OLD} (bridge output block {L}), random init; "
            f"bridge rank {RANK}, {N_PROTO} prototypes; batch {BATCH}; {os.cpu_count()} CPU cores, "
            f"torch threads 2. One-time cache pass: {cache['seconds']:.1f} s for {a.windows} windows "
            f"(peak RSS {cache['peak_rss_mb']:.0f} MB, a separate process). Every mode first runs one untimed "
            f"warm-up forward, so process start-up costs are excluded on both sides alike.\n\n{table}\n\n"
            f"Both trainers start from the same bridge and see the same batches in the same order, so their losses "
            f"must agree step by step (they compute the same function; differences are float rounding).\n"
            f"Measured on {time.strftime('%Y-%m-%d')} with `python benchmarks/train_speed.py` "
            f"(--windows {a.windows} --naive-epochs {a.naive_epochs} --cached-epochs {a.cached_epochs}).\n")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_speed.md").write_text(text)
    print(json.dumps(summary, indent=2) if a.json else text)


if __name__ == "__main__":
    main()
