"""Run configs: TOML and YAML, validated with one-line errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebridge.config import ConfigError, config_to_toml, default_config, load_config

MINIMAL = """
name = "mine"
new_modality = "ppg"
old_modality = "ecg"
[new]
backbone = "tiny_cnn"
checkpoint = "models/new.safetensors"
[old]
backbone = "tiny_transformer"
checkpoint = "models/old.safetensors"
head = "models/head.safetensors"
[bridge]
in_layer = 2
out_layer = "auto"
rank = 4
"""


def _write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_toml_loads_with_defaults_and_resolved_paths(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL))
    assert cfg.bridge.in_layer == 2 and cfg.bridge.out_layer == "auto" and cfg.bridge.n_prototypes == 16
    assert cfg.train.epochs == 30 and cfg.data.loader == "synthetic"
    assert cfg.old.head == str((tmp_path / "models/head.safetensors").resolve())


def test_yaml_is_equivalent(tmp_path: Path) -> None:
    yaml_text = ("name: mine\nnew_modality: ppg\nold_modality: ecg\nnew: {backbone: tiny_cnn}\n"
                 "old: {backbone: tiny_transformer, head: h.safetensors}\ntrain: {epochs: 3, lr: 0.01}\n")
    cfg = load_config(_write(tmp_path, yaml_text, "run.yaml"))
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.01


@pytest.mark.parametrize("edit, message", [
    (("rank = 4", "rnak = 4"), r"bridge\.rnak: unknown field; did you mean 'rank'\?"),
    (('backbone = "tiny_cnn"', ""), r"new\.backbone: missing required field"),
    (("rank = 4", 'rank = "four"'), r"bridge\.rank: expected int, got 'four'"),
    (("in_layer = 2", 'in_layer = "last"'), r"bridge\.in_layer: expected a block index or 'auto'"),
    (("rank = 4", "rank = 4\n[train]\nschedule = 'step'"), r"train: train\.schedule must be"),
])
def test_config_errors_name_the_field(tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, MINIMAL.replace(*edit)))


def test_bad_syntax_and_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(_write(tmp_path, "name = ", "bad.toml"))
    with pytest.raises(ConfigError, match="must end in"):
        load_config(_write(tmp_path, MINIMAL, "run.json"))


def test_default_config_round_trips_through_toml(tmp_path: Path) -> None:
    cfg = default_config("x")
    again = load_config(_write(tmp_path, config_to_toml(cfg)))
    assert again.to_dict() == cfg.to_dict()
