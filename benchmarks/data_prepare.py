"""Preparation throughput and peak memory: streaming ``prepare_dataset`` vs the naive load-everything-then-window.

Generates a WESAD-sized fixture (15 subjects × ~2 h: chest ECG 700 Hz + wrist BVP 64 Hz + 700-Hz labels, Python-2
pickles) in a temporary folder, then runs each approach in its own subprocess (2 cores) and reads its peak RSS
(``ru_maxrss``). Writes benchmarks/results/data_prepare.md.

    python benchmarks/data_prepare.py [--subjects 15] [--hours 2] [--window-s 60] [--stride-s 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench")


def naive(root: Path, out: Path, window_s: float, stride_s: float) -> int:
    """Load every subject, cut every window into memory, then save one npz per split (what make_*.py do)."""
    import numpy as np

    from edgebridge.data.recordings import get_loader
    from edgebridge.data.windows import split_subjects
    from edgebridge.windowing import cut_windows

    loader = get_loader("wesad")
    recs = list(loader(root))
    splits = split_subjects([r.subject for r in recs], {"train": 5, "val": 2, "pair": 5, "test": 3})
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for split, ids in splits.items():
        xs_new, xs_old, ys = [], [], []
        for r in (r for r in recs if r.subject in ids):
            new, old = r.signal("ppg"), r.signal("ecg")
            wn, sn = int(window_s * new.fs_hz), int(stride_s * new.fs_hz)
            wo, so = int(window_s * old.fs_hz), int(stride_s * old.fs_hz)
            k = min(cut_windows(new.data, wn, sn).shape[0], cut_windows(old.data, wo, so).shape[0])
            lab = np.array([r.labels.window_label(j * stride_s, window_s) for j in range(k)])
            keep = lab >= 0
            xs_new.append(np.array(cut_windows(new.data, wn, sn)[:k][keep]))
            xs_old.append(np.array(cut_windows(old.data, wo, so)[:k][keep]))
            ys.append(lab[keep])
        if ids:
            np.savez(out / f"{split}.npz", x_new=np.concatenate(xs_new), x_old=np.concatenate(xs_old),
                     label=np.concatenate(ys))
            total += int(sum(y.size for y in ys))
    return total


def child(approach: str, root: Path, out: Path, window_s: float, stride_s: float) -> None:
    t0 = time.perf_counter()
    if approach == "streaming":
        from edgebridge.data.prepare import prepare_dataset

        prepare_dataset("wesad", root, out, window_s=window_s, stride_s=stride_s)
        n = sum(c["windows"] for c in json.loads((out / "manifest.json").read_text())["counts"].values())
    else:
        n = naive(root, out, window_s, stride_s)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"windows": n, "seconds": time.perf_counter() - t0, "peak_rss_mb": peak_mb}))


def run_child(approach: str, root: Path, out: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "PYTHONPATH": str(REPO)}
    cmd = ["taskset", "-c", "0,1"] if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 2 else []
    cmd += [sys.executable, __file__, "--child", approach, "--root", str(root), "--out", str(out),
            "--window-s", str(args.window_s), "--stride-s", str(args.stride_s)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["out_mb"] = sum(p.stat().st_size for p in out.rglob("*.npz")) / 2**20
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=15)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--window-s", type=float, default=60.0)
    ap.add_argument("--stride-s", type=float, default=5.0)
    ap.add_argument("--child")
    ap.add_argument("--root", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.root, args.out, args.window_s, args.stride_s)
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures_data import write_wesad

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "WESAD"
        t0 = time.perf_counter()
        ids = [f"S{i}" for i in range(2, 2 + args.subjects)]
        write_wesad(root, ids, duration_s=args.hours * 3600, full=False)
        in_mb = sum(p.stat().st_size for p in root.rglob("*.pkl")) / 2**20
        log.info("fixture: %d subjects, %.0f MB of pickles in %.0f s", len(ids), in_mb, time.perf_counter() - t0)
        results = {}
        # naive second so that its page-cache warm-up cannot flatter the streaming run
        for approach in ("streaming", "naive"):
            results[approach] = run_child(approach, root, Path(tmp) / approach, args)
            shutil.rmtree(Path(tmp) / approach)
            log.info("%s: %s", approach, results[approach])
    write_report(results, in_mb, args)


def write_report(results: dict, in_mb: float, args: argparse.Namespace) -> None:
    s, n = results["streaming"], results["naive"]
    rows = []
    for name, r in (("streaming `prepare_dataset`", s), ("naive load-all-then-window", n)):
        rows.append(f"| {name} | {r['windows']} | {r['seconds']:.1f} | {r['windows'] / r['seconds']:.0f} | "
                    f"{in_mb / r['seconds']:.1f} | {r['out_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
    text = f"""# Data preparation benchmark

`python benchmarks/data_prepare.py --subjects {args.subjects} --hours {args.hours} --window-s {args.window_s} \
--stride-s {args.stride_s}` — WESAD-format fixture ({args.subjects} subjects × {args.hours} h, chest ECG 700 Hz +
wrist BVP 64 Hz + 700-Hz labels, Python-2 pickles, {in_mb:.0f} MB on disk), each approach in its own subprocess on
2 cores; peak memory is that subprocess's `ru_maxrss`. MB/s = input pickle MB / wall time. Labelled windows only
(constant label in 1/2/3), {args.window_s:g}-s windows every {args.stride_s:g} s, raw at native rates (live mode).

| approach | windows | wall s | windows/s | input MB/s | output MB | peak RSS MB |
|---|---|---|---|---|---|---|
{rows[0]}
{rows[1]}

Peak memory ratio naive / streaming: **{n['peak_rss_mb'] / s['peak_rss_mb']:.1f}×**; time ratio naive / streaming:
{n['seconds'] / s['seconds']:.2f}×. Streaming holds one subject plus a {64}-window chunk; the naive approach holds every
recording and a whole split's windows (with 55 s of overlap per 60-s window, each sample is copied 12×).
"""
    out = REPO / "benchmarks" / "results" / "data_prepare.md"
    out.write_text(text)
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
