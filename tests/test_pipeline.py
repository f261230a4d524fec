"""The method end to end (select → train → evaluate), the CLI, and bad input rejected before long work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgebridge.backbones.weights import CheckpointMismatch
from edgebridge.bridge.checkpoint import load_bridged
from edgebridge.bridge.compose import hook_injected_forward
from edgebridge.cli import main
from edgebridge.config import config_to_toml, default_config
from edgebridge.pipeline import run_pipeline
from edgebridge.runs import new_run_dir, run_windows
from edgebridge.spec import SpecError


def small_config(name: str = "small"):
    cfg = default_config(name)
    cfg.data.options = {"n_subjects": 10, "minutes_per_condition": 1.0}
    cfg.demo.old_epochs, cfg.demo.new_epochs, cfg.train.epochs = 3, 2, 4
    return cfg


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("runs")
    run_dir = new_run_dir("small", root)
    return run_dir, run_pipeline(small_config(), run_dir)


def test_run_directory_holds_every_artifact(small_run) -> None:
    run_dir, summary = small_run
    for name in ("run.json", "config.toml", "selection.json", "metrics.json", "selection_probe.png",
                 "selection_cka.png", "training_curves.png", "bridge/bridge.safetensors", "bridge/bridge_config.json",
                 "bridge/backbones.json", "models/old_head.safetensors"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "selection_cka.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["trainable_params"] == summary["trainable_params"] > 0
    for key in ("oracle", "bridged", "chance"):
        assert 0.0 <= metrics[key]["balanced_accuracy"] <= 1.0
    sel = json.loads((run_dir / "selection.json").read_text())
    assert (sel["in_layer"], sel["out_layer"]) == (summary["positions"]["in_layer"], summary["positions"]["out_layer"])


def test_trained_chain_needs_only_the_new_modality_and_equals_the_paper_path(small_run) -> None:
    run_dir, _ = small_run
    model, cfg = load_bridged(run_dir / "bridge")
    test = run_windows(run_dir, "test")
    x_new, x_old, _ = next(test.batches(8))
    with torch.no_grad():
        sliced = model(torch.from_numpy(x_new))
        reference = hook_injected_forward(model.prefix.backbone, cfg.in_layer, model.bridge, model.suffix.backbone,
                                          cfg.out_layer, model.head, torch.from_numpy(x_new), torch.from_numpy(x_old))
    torch.testing.assert_close(sliced, reference, atol=1e-5, rtol=1e-5)


def test_cached_features_are_reused_across_runs(small_run, caplog) -> None:
    run_dir, _ = small_run
    again = new_run_dir("again", run_dir.parent)
    (again / "models").mkdir()
    for f in (run_dir / "models").iterdir():
        (again / "models" / f.name).write_bytes(f.read_bytes())
    with caplog.at_level("INFO"):
        run_pipeline(small_config(), again, stop_after="select")
    assert "reusing cached frozen features" in caplog.text


def test_cli_train_then_evaluate_latest(tmp_path: Path, small_run) -> None:
    run_dir, _ = small_run
    cfg = small_config("cli")
    cfg.demo.enabled = False
    cfg.old.checkpoint = str(run_dir / "models/old_backbone.safetensors")
    cfg.old.head = str(run_dir / "models/old_head.safetensors")
    cfg.new.checkpoint = str(run_dir / "models/new_backbone.safetensors")
    cfg.bridge.in_layer, cfg.bridge.out_layer = 2, 1
    path = tmp_path / "cli.toml"
    path.write_text(config_to_toml(cfg))
    runner = CliRunner()
    result = runner.invoke(main, ["-q", "train", str(path), "--runs-root", str(tmp_path / "runs"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["positions"] == {"in_layer": 2, "out_layer": 1}
    result = runner.invoke(main, ["-q", "evaluate", "--runs-root", str(tmp_path / "runs"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["bridged"] == summary["bridged"]


@pytest.mark.parametrize("change, error, message", [
    (lambda c: c.data.split_fractions.update(pair=0.0), ValueError, "pair split has no windows"),
    (lambda c: c.data.options.update(fs_ecg_hz=36.0), SpecError, "needs a source rate above 40"),
    (lambda c: setattr(c.bridge, "out_layer", 9), IndexError, "bridge.out_layer = 9 is out of range"),
    (lambda c: setattr(c.old, "checkpoint", c.new.checkpoint), CheckpointMismatch, "missing keys"),
])
def test_bad_input_fails_before_long_work(tmp_path: Path, small_run, change, error, message: str) -> None:
    run_dir, _ = small_run
    cfg = small_config("bad")
    cfg.demo.enabled = False
    cfg.old.checkpoint = str(run_dir / "models/old_backbone.safetensors")
    cfg.old.head = str(run_dir / "models/old_head.safetensors")
    cfg.new.checkpoint = str(run_dir / "models/new_backbone.safetensors")
    change(cfg)
    with pytest.raises(error, match=message):
        run_pipeline(cfg, new_run_dir("bad", tmp_path))
    assert not list(tmp_path.glob("**/train_state.pt"))


def test_nan_samples_are_reported_with_the_subject(tmp_path: Path) -> None:
    from edgebridge.data.recordings import LOADERS
    from edgebridge.data.synthetic import SyntheticConfig, make_dataset

    def nan_loader(root=None, **options):
        recs = make_dataset(SyntheticConfig(n_subjects=8, minutes_per_condition=0.5))
        recs[3].signals["ppg"].data[0, 100] = np.nan
        return iter(recs)

    LOADERS.add("nan_synthetic", nan_loader)
    try:
        cfg = small_config("nan")
        cfg.data.loader, cfg.data.options = "nan_synthetic", {}
        with pytest.raises(ValueError, match="subject S04: ppg has 1 NaN/inf sample"):
            run_pipeline(cfg, new_run_dir("nan", tmp_path))
    finally:
        LOADERS.remove("nan_synthetic")


def test_quickstart_meets_the_method_targets() -> None:
    """The built-in run: bridged PPG-only model within 10 points of the ECG oracle, far above chance, <5% params."""
    result = CliRunner().invoke(main, ["-q", "quickstart", "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    for key in ("oracle", "bridged", "chance"):
        assert "balanced_accuracy" in s[key]
    assert {"trainable_params", "frozen_params", "seconds"} <= set(s)
    assert s["bridged"]["balanced_accuracy"] >= s["oracle"]["balanced_accuracy"] - 0.10
    assert s["bridged"]["balanced_accuracy"] >= s["chance"]["balanced_accuracy"] + 0.2
    assert s["trainable_params"] < 0.05 * s["frozen_params"]


def test_cli_reports_designed_errors_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", "--runs-root", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: FileNotFoundError: no runs under {tmp_path / 'none'}/; start one with `edgebridge train` or "
        "`edgebridge quickstart`"]
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nnew_modality = "ppg"\nold_modality = "ecg"\n[new]\nbackbone = "tiny_cnn"\n'
                   '[old]\nbackbone = "tiny_cnn"\n[bridge]\nrnak = 3\n')
    result = runner.invoke(main, ["train", str(bad), "--runs-root", str(tmp_path / "runs")])
    assert result.exit_code == 1 and "bridge.rnak: unknown field; did you mean 'rank'?" in result.output
    assert "Traceback" not in result.output
