"""Run directories under ``runs/``: created by ``train``/``quickstart``, found again by later commands.

Layout::

    runs/<name>-<YYYYmmdd-HHMMSS>/
      run.json            created time, status, resolved config
      config.toml         the config as run (edit and pass to `edgebridge train` to repeat it)
      models/             demo models (only for the built-in demo)
      selection.json      probe scores, CKA matrix, chosen positions
      bridge/             bridge_config.json, bridge.safetensors, backbones.json
      metrics.json        oracle / bridged / chance metrics, parameter counts, timings
      *.png               probe, CKA heatmap, training curves
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edgebridge.io import atomic_write_json

DEFAULT_ROOT = Path("runs")
RUN_FILE = "run.json"


def new_run_dir(name: str, root: str | Path = DEFAULT_ROOT) -> Path:
    """A fresh, uniquely named run directory."""
    root = Path(root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{name}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = root / f"{name}-{stamp}-{suffix}"
    path.mkdir(parents=True)
    return path


def write_run_info(run_dir: Path, **fields: Any) -> None:
    """Merge ``fields`` into run.json (atomically)."""
    path = run_dir / RUN_FILE
    info = json.loads(path.read_text()) if path.is_file() else {"created": time.time()}
    info.update(fields)
    atomic_write_json(path, info)


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not an edgebridge run directory (no {RUN_FILE})")
    return json.loads(path.read_text())


def latest_run(root: str | Path = DEFAULT_ROOT) -> Path:
    """The most recently created run under ``root``."""
    root = Path(root)
    runs = [p for p in root.glob("*") if (p / RUN_FILE).is_file()] if root.is_dir() else []
    if not runs:
        raise FileNotFoundError(f"no runs under {root}/; start one with `edgebridge train` or `edgebridge quickstart`")
    return max(runs, key=lambda p: read_run_info(p).get("created", 0.0))


def resolve_run(run_dir: str | Path | None, root: str | Path = DEFAULT_ROOT) -> Path:
    return Path(run_dir) if run_dir is not None else latest_run(root)


def run_splits(run_dir: str | Path, splits: tuple[str, ...]) -> dict[str, Any]:
    """The run's paired windows of several splits, rebuilt from its config with one read of the recordings."""
    from edgebridge.config import RunConfig, from_dict
    from edgebridge.pipeline import build_windows, resolve_specs

    cfg = from_dict(RunConfig, read_run_info(run_dir)["config"])
    spec_new, spec_old = resolve_specs(cfg)
    return build_windows(cfg, spec_new, spec_old, splits=tuple(dict.fromkeys(splits)))


def run_windows(run_dir: str | Path, split: str) -> Any:
    """The run's paired windows of one split (train / val / pair / test)."""
    return run_splits(run_dir, (split,))[split]
