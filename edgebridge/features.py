"""One frozen pass over paired windows → every feature selection and training need, cached on disk.

Both models are frozen, so their outputs never change across epochs, runs or bridge positions. One no-grad pass
stores, per window: the pooled output of every new-model block, the pooled input of every old-model block, the
old model's pseudo-label and its flattened last-block output (the training target), plus a reservoir of real
old-block token vectors per block (for ``randreal`` prototypes). Training then never runs the new model and
never runs the old model below block l. Files are ``.npy`` read back memory-mapped; the cache key covers model
weights, windows and code version, so a change invalidates it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgebridge.backbones.base import Backbone
from edgebridge.io import atomic_directory

log = logging.getLogger(__name__)
CACHE_VERSION = 2
RESERVOIR_ROWS = 2048


def module_fingerprint(module: nn.Module) -> str:
    """sha256 over parameter/buffer names, shapes and bytes (identifies frozen weights for cache keys)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # bytes of any dtype, bf16 too
        h.update(raw.numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class FeatureSet:
    """Cached arrays of one split (memory-mapped when read from disk).

    Shapes: new_pooled[m] (N, d_m); old_in_pooled[l] (N, d_l); old_last (N, N_L·D_L); pseudo (N,); labels (N,);
    old_in_rows[l] (≤RESERVOIR_ROWS, d_l).
    """

    new_pooled: list[np.ndarray]
    old_in_pooled: list[np.ndarray]
    old_in_rows: list[np.ndarray]
    old_last: np.ndarray
    pseudo: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.pseudo.shape[0])


@torch.no_grad()
def _batch_features(new: Backbone, old: Backbone, head: nn.Module, x_new: torch.Tensor, x_old: torch.Tensor
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    new_pooled, h = [], new.embed(x_new)
    for i in range(new.n_blocks):
        h = new.run_block(i, h)
        new_pooled.append(new.pool(h))
    old_pooled, old_tokens, h = [], [], old.embed(x_old)
    for i in range(old.n_blocks):
        btd = old.to_btd(h)
        old_pooled.append(btd.mean(dim=1))
        old_tokens.append(btd)
        h = old.run_block(i, h)
    pseudo = head(old.readout(h)).argmax(dim=1)
    # canonical (B, N·D): native layouts may fold variables into the batch (NormWear), which a flatten would split
    return new_pooled, old_pooled, old_tokens, old.to_btd(h).flatten(1), pseudo


def compute_features(new: Backbone, old: Backbone, head: nn.Module, windows: Any, batch_size: int = 32,
                     device: str | torch.device = "cpu", seed: int = 0, progress: bool = True) -> dict[str, np.ndarray]:
    """Run both frozen models once over ``windows`` (PairedWindows-like) and gather every cached array."""
    from tqdm.auto import tqdm

    n = len(windows)
    if n == 0:
        raise ValueError("no windows to compute features from (empty split?)")
    rng = np.random.default_rng(seed)
    rows_per_window = max(1, RESERVOIR_ROWS // n + 1)
    parts: dict[str, list[np.ndarray]] = {}

    def put(key: str, value: torch.Tensor | np.ndarray) -> None:
        parts.setdefault(key, []).append(value.float().cpu().numpy() if isinstance(value, torch.Tensor) else value)

    n_batches = (n + batch_size - 1) // batch_size
    for x_new, x_old, y in tqdm(windows.batches(batch_size), total=n_batches, desc="caching frozen features",
                                disable=None if progress else True, leave=False):
        new_p, old_p, old_t, last, pseudo = _batch_features(
            new, old, head, torch.from_numpy(x_new).to(device), torch.from_numpy(x_old).to(device))
        for i, f in enumerate(new_p):
            put(f"new_pooled_{i:02d}", f)
        for i, (f, tokens) in enumerate(zip(old_p, old_t, strict=True)):
            put(f"old_in_pooled_{i:02d}", f)
            pick = rng.integers(0, tokens.shape[1], size=(tokens.shape[0], min(rows_per_window, tokens.shape[1])))
            rows = torch.gather(tokens, 1, torch.from_numpy(pick).to(tokens.device)[..., None]
                                .expand(-1, -1, tokens.shape[2]))
            put(f"old_in_rows_{i:02d}", rows.reshape(-1, tokens.shape[2]))
        put("old_last", last)
        put("pseudo", pseudo.cpu().numpy().astype(np.int64))
        put("labels", y)
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    for k in [k for k in arrays if k.startswith("old_in_rows_")]:
        rows = arrays[k]
        arrays[k] = rows[rng.permutation(rows.shape[0])[:RESERVOIR_ROWS]]
    return arrays


def cache_key(new: Backbone, old: Backbone, head: nn.Module, windows: Any) -> str:
    parts = [str(CACHE_VERSION), module_fingerprint(new), module_fingerprint(old), module_fingerprint(head),
             windows.fingerprint()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def load_feature_dir(path: Path) -> FeatureSet:
    meta = json.loads((path / "meta.json").read_text())

    def arr(name: str) -> np.ndarray:
        return np.load(path / f"{name}.npy", mmap_mode="r")

    return FeatureSet(new_pooled=[arr(f"new_pooled_{i:02d}") for i in range(meta["n_new_blocks"])],
                      old_in_pooled=[arr(f"old_in_pooled_{i:02d}") for i in range(meta["n_old_blocks"])],
                      old_in_rows=[arr(f"old_in_rows_{i:02d}") for i in range(meta["n_old_blocks"])],
                      old_last=arr("old_last"), pseudo=arr("pseudo"), labels=arr("labels"))


def cached_features(cache_root: str | Path, new: Backbone, old: Backbone, head: nn.Module, windows: Any,
                    batch_size: int = 32, device: str | torch.device = "cpu", progress: bool = True) -> FeatureSet:
    """Features of ``windows``, computed once and reused while models, windows and code version are unchanged."""
    path = Path(cache_root) / cache_key(new, old, head, windows)
    if (path / "meta.json").is_file():
        log.info("reusing cached frozen features %s", path)
        return load_feature_dir(path)
    arrays = compute_features(new, old, head, windows, batch_size, device, progress=progress)
    with atomic_directory(path) as tmp:
        for name, value in arrays.items():
            np.save(tmp / f"{name}.npy", value)
        (tmp / "meta.json").write_text(json.dumps({"n_new_blocks": new.n_blocks, "n_old_blocks": old.n_blocks,
                                                   "n_windows": len(windows), "version": CACHE_VERSION}))
    log.info("cached frozen features of %d windows in %s", len(windows), path)
    return load_feature_dir(path)
