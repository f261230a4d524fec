"""Run configuration: typed dataclasses read from TOML or YAML, validated with one-line errors naming the field.

A run config says which frozen models to bridge (registry names, weights, heads, SignalSpecs), where paired data
comes from, where to connect (explicit or ``auto``) and how to train. ``edgebridge train`` with no config uses
:func:`default_config` — the built-in synthetic ECG → PPG demo.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import tomllib

from edgebridge.old_head import HeadFitConfig
from edgebridge.train import TrainConfig


class ConfigError(ValueError):
    """A run config is invalid; the message names the field."""


@dataclass
class ModelSection:
    """A frozen model: registry name + factory kwargs + weights (+ the old model's task head).

    ``spec`` overrides SignalSpec fields of the backbone's default spec (e.g. ``window_s``). For the old model,
    leaving ``head`` out while giving ``classes`` makes the pipeline fit the head first (``[head_fit]``).
    """

    backbone: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    head: str | None = None
    classes: list[str] | None = None
    trust_checkpoint: bool = False


@dataclass
class DataSection:
    """Paired recordings: a registered loader (with options) or a directory from ``edgebridge data prepare``."""

    loader: str = "synthetic"
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    prepared: str | None = None
    split_fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.3, "val": 0.15, "pair": 0.3,
                                                                       "test": 0.25})
    split_seed: int = 0


@dataclass
class BridgeSection:
    """Where and how big: ``in_layer``/``out_layer`` are block indices or ``"auto"`` (probe + CKA)."""

    in_layer: int | str = "auto"
    out_layer: int | str = "auto"
    rank: int = 8
    n_prototypes: int = 16
    prototype_init: str = "randreal"
    probe_folds: int = 5

    def __post_init__(self) -> None:
        for name in ("in_layer", "out_layer"):
            value = getattr(self, name)
            if isinstance(value, str) and value != "auto":
                raise ConfigError(f"bridge.{name}: expected a block index or 'auto', got '{value}'")
        if self.rank < 1 or self.n_prototypes < 1:
            raise ConfigError("bridge.rank and bridge.n_prototypes must be >= 1")
        if self.prototype_init not in ("randreal", "randn"):
            raise ConfigError(f"bridge.prototype_init: expected 'randreal' or 'randn', got '{self.prototype_init}'")


@dataclass
class DemoSection:
    """Built-in demo: train the old (ECG) model with labels and pretrain the new (PPG) encoder without them."""

    enabled: bool = False
    old_epochs: int = 12
    new_epochs: int = 8


@dataclass
class RunConfig:
    name: str
    new: ModelSection
    old: ModelSection
    new_modality: str
    old_modality: str
    data: DataSection = field(default_factory=DataSection)
    bridge: BridgeSection = field(default_factory=BridgeSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    demo: DemoSection = field(default_factory=DemoSection)
    head_fit: HeadFitConfig = field(default_factory=HeadFitConfig)  # used when old.head is not given

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- parsing ------------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(o) for o in options)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table of fields, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        args = typing.get_args(tp)
        return {k: _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()} if args else dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown, missing or mistyped fields raise ConfigError."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known: {sorted(fields)}"
            raise ConfigError(f"{prefix}{key}: unknown field{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f"{prefix}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name}: missing required field")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        return data
    raise ConfigError(f"{path}: config files must end in .toml, .yaml or .yml")


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run config (relative paths inside it are resolved against the file's folder)."""
    path = Path(path)
    cfg = from_dict(RunConfig, read_config_file(path))
    base = path.resolve().parent
    for section in (cfg.new, cfg.old):
        for attr in ("checkpoint", "head"):
            value = getattr(section, attr)
            if value is not None and not Path(value).is_absolute():
                setattr(section, attr, str((base / value).resolve()))
    for attr in ("root", "prepared"):
        value = getattr(cfg.data, attr)
        if value is not None and not Path(value).is_absolute():
            setattr(cfg.data, attr, str((base / value).resolve()))
    return cfg


def default_config(name: str = "quickstart") -> RunConfig:
    """The built-in run: synthetic paired ECG/PPG with stress labels; old = ECG transformer, new = PPG 1-D ResNet.

    Sizes are chosen so the whole method runs in a few minutes on 2 CPU cores; the split gives the old model
    (trained with labels) the most subjects, as the paper's stage-1 probe also trains on its own split.
    """
    ecg_spec = {"modality": "ecg", "fs_hz": 50.0, "channels": ["ecg"], "window_s": 10.0, "stride_s": 5.0,
                "bandpass_hz": [0.5, 20.0]}
    ppg_spec = {"modality": "ppg", "fs_hz": 32.0, "channels": ["ppg"], "window_s": 10.0, "stride_s": 5.0,
                "bandpass_hz": [0.5, 8.0]}
    return RunConfig(
        name=name,
        old=ModelSection(backbone="tiny_transformer", kwargs={"dim": 32, "depth": 4, "heads": 4, "patch": 10},
                         spec=ecg_spec, classes=["baseline", "stress", "amusement"]),
        new=ModelSection(backbone="tiny_cnn", kwargs={"widths": [16, 16, 32, 32, 32, 32], "kernel": 5},
                         spec=ppg_spec),
        new_modality="ppg", old_modality="ecg",
        data=DataSection(loader="synthetic", options={"n_subjects": 36, "minutes_per_condition": 2.0},
                         split_fractions={"train": 0.45, "val": 0.1, "pair": 0.25, "test": 0.2}),
        bridge=BridgeSection(rank=4, n_prototypes=8),
        train=TrainConfig(epochs=40, batch_size=32, lr=3e-3),
        demo=DemoSection(enabled=True, old_epochs=12, new_epochs=6),
    )


def config_to_toml(cfg: RunConfig) -> str:
    """Serialise a RunConfig as TOML (None values are omitted, as TOML has no null)."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {fmt(x)}" for k, x in v.items() if x is not None) + "}"
        raise TypeError(f"cannot write {v!r} to TOML")

    data = cfg.to_dict()
    lines = [f"{k} = {fmt(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {fmt(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"
