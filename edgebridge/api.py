"""The Python API behind every CLI verb, so a notebook never has to shell out.

    import edgebridge as eb
    summary = eb.quickstart()                       # the whole method on the built-in demo
    run = eb.train_bridge("configs/my_run.toml")    # select + train + evaluate into runs/<name>-<time>/
    model, config = eb.load_bridged(run / "bridge") # BridgedModel: new-modality windows -> logits
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgebridge.config import RunConfig, default_config, load_config
from edgebridge.runs import DEFAULT_ROOT, new_run_dir, read_run_info, resolve_run

log = logging.getLogger(__name__)


def _config(config: str | Path | RunConfig | None) -> RunConfig:
    if config is None:
        return default_config("demo")
    return config if isinstance(config, RunConfig) else load_config(config)


def _apply(cfg: RunConfig, device: str | None, epochs: int | None) -> RunConfig:
    if device is not None:
        cfg.train.device = device
    if epochs is not None:
        cfg.train.epochs = epochs
    return cfg


def select_positions(config: str | Path | RunConfig | None = None, runs_root: str | Path = DEFAULT_ROOT,
                     device: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Pick (m, l) by linear probe + CKA on the pair split; returns the run dir and the positions."""
    from edgebridge.pipeline import run_pipeline

    cfg = _apply(_config(config), device, None)
    run_dir = new_run_dir(cfg.name, runs_root)
    return run_dir, run_pipeline(cfg, run_dir, stop_after="select")


def train_bridge(config: str | Path | RunConfig | None = None, runs_root: str | Path = DEFAULT_ROOT,
                 resume: str | Path | None = None, device: str | None = None,
                 epochs: int | None = None) -> tuple[Path, dict[str, Any]]:
    """Select positions (if ``auto``), train the bridge, evaluate on held-out subjects.

    ``resume`` continues an interrupted run directory from its last checkpoint (its own config is reused).
    """
    from edgebridge.config import from_dict
    from edgebridge.pipeline import run_pipeline

    if resume is not None:
        run_dir = Path(resume)
        cfg = _apply(from_dict(RunConfig, read_run_info(run_dir)["config"]), device, epochs)
    else:
        cfg = _apply(_config(config), device, epochs)
        run_dir = new_run_dir(cfg.name, runs_root)
    return run_dir, run_pipeline(cfg, run_dir, stop_after="evaluate", resume=True)


def evaluate(run_dir: str | Path | None = None, runs_root: str | Path = DEFAULT_ROOT) -> dict[str, Any]:
    """Held-out metrics of a trained run (the latest one by default)."""
    from edgebridge.pipeline import evaluate_run

    return evaluate_run(resolve_run(run_dir, runs_root))


def quickstart(out: str | Path | None = None, epochs: int | None = None) -> dict[str, Any]:
    """Run the whole method on the built-in synthetic ECG→PPG stress task; keep the run only if ``out`` is given."""
    from edgebridge.pipeline import run_pipeline

    cfg = _apply(default_config("quickstart"), None, epochs)
    root = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="edgebridge-quickstart-"))
    try:
        run_dir = new_run_dir(cfg.name, root)
        summary = run_pipeline(cfg, run_dir)
    finally:
        if out is None:
            shutil.rmtree(root, ignore_errors=True)
    if out is None:
        summary["run_dir"] = None
    return summary


def load_bridged(bridge_dir: str | Path, trust_pickle: bool = False) -> Any:
    """The trained chain (frozen, eval) and its BridgeConfig, from a run's ``bridge/`` directory."""
    from edgebridge.bridge.checkpoint import load_bridged as _load

    return _load(bridge_dir, trust_pickle)
