"""``--precision auto``: time the bundle's precisions on this device and stream with the fastest trusted one.

Which precision is fastest depends on the chain and the machine, not on a rule: on a 2-core x86 CPU the int8 file
runs the paper WESAD chain 2× faster than fp32, yet the 80 k-parameter quickstart chain 1.1–1.3× slower (Q/DQ overhead
beats the integer kernels on tiny matrices); fp16 pays off on GPUs and loses on ORT's CPU EP. So ``auto`` opens each
candidate, times a few batch-1 calls on the bundle's own check windows and keeps the fastest. int8 is a candidate
only when its accuracy gate passed at export (a bundle shipped with ``allow_int8_drop`` needs an explicit
``--precision int8``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("cuda", "tensorrt")
#: Wall-clock budget per candidate once warm; enough for ≥5 calls of a 50 ms chain, a few ms for tiny ones.
TIME_BUDGET_S = 0.25
MIN_CALLS, MAX_CALLS, WARMUP_CALLS = 5, 50, 3


def candidates(manifest: dict[str, Any], provider: str | None) -> list[str]:
    """Precisions worth timing for ``provider``: fp16 only on GPU providers, int8 only past its accuracy gate."""
    present = manifest["precisions"]
    gpu = (provider or "cpu").lower() in GPU_PROVIDERS
    out = [p for p in ("fp32", "fp16") if p in present and (p == "fp32" or gpu)]
    int8 = present.get("int8")
    if int8 is not None:
        gate = int8.get("gate", {})
        if gate.get("passed") and not gate.get("allowed_drop"):
            out.append("int8")
        else:
            log.info("auto precision: int8 skipped (its accuracy gate did not pass at export)")
    return out or sorted(present)[:1]


def median_call_ms(run: Callable[[np.ndarray], Any], x: np.ndarray) -> float:
    """Median wall-clock of ``run(x)`` after a warm-up, within TIME_BUDGET_S (at least MIN_CALLS calls)."""
    for _ in range(WARMUP_CALLS):
        run(x)
    times: list[float] = []
    deadline = time.perf_counter() + TIME_BUDGET_S
    while len(times) < MAX_CALLS and (len(times) < MIN_CALLS or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def fastest(path: Path, manifest: dict[str, Any], load: Callable[[str], Any], provider: str | None,
            sample: np.ndarray) -> tuple[Any, dict[str, float]]:
    """Load every candidate with ``load(precision)``, time it on ``sample`` (1, C, T); return the fastest loaded
    bundle and the median ms of each candidate."""
    timings: dict[str, float] = {}
    best: tuple[float, Any] | None = None
    for precision in candidates(manifest, provider):
        loaded = load(precision)
        timings[precision] = median_call_ms(loaded.predict_preprocessed, sample)
        if best is None or timings[precision] < best[0]:
            best = (timings[precision], loaded)
    assert best is not None
    log.info("auto precision for %s on %s: %s (median ms per window: %s)", path.name, best[1].provider,
             best[1].precision, ", ".join(f"{p} {ms:.2f}" for p, ms in timings.items()))
    return best[1], timings
