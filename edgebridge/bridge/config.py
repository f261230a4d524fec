"""BridgeConfig: everything needed to rebuild a trained bridge, saved as ``bridge_config.json``.

Dimensions are never typed by hand: ``BridgeConfig.for_models`` reads them from the backbones' probes.
``spec_new`` is copied verbatim into the bundle manifest at export, so nothing downstream restates fs or windows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from edgebridge.spec import SignalSpec

PROTOTYPE_INITS = ("randreal", "randn")


@dataclass(frozen=True)
class ModelRef:
    """How to rebuild a frozen model: registry name, factory kwargs, weights (and task head) with their hashes."""

    backbone: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    sha256: str | None = None
    head: str | None = None
    head_sha256: str | None = None
    trust_pickle: bool = False


@dataclass(frozen=True)
class BridgeConfig:
    """Positions, sizes and provenance of one bridge.

    Attributes:
        in_layer: m, the new-model block whose (pooled) output feeds the bridge.
        out_layer: l, the old-model block whose input the bridge replaces.
        rank, n_prototypes: bridge capacity (r, Np).
        d_in, d_out, n_tokens: probed sizes (pooled new block-m output; old block-l input tokens × features).
        prototype_init: ``randreal`` (real old block-l features) or ``randn``.
        spec_new, spec_old: SignalSpecs of the two models' inputs.
        class_names: labels of the old model's head.
    """

    in_layer: int
    out_layer: int
    rank: int
    n_prototypes: int
    d_in: int
    d_out: int
    n_tokens: int
    spec_new: SignalSpec
    spec_old: SignalSpec
    class_names: tuple[str, ...]
    new_model: ModelRef
    old_model: ModelRef
    prototype_init: str = "randreal"
    format_version: int = 1

    def __post_init__(self) -> None:
        if self.prototype_init not in PROTOTYPE_INITS:
            raise ValueError(f"unknown prototype_init '{self.prototype_init}'; known: {list(PROTOTYPE_INITS)}")
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @classmethod
    def for_models(cls, new: Any, old: Any, in_layer: int, out_layer: int, rank: int, n_prototypes: int,
                   class_names: tuple[str, ...], new_ref: ModelRef, old_ref: ModelRef,
                   prototype_init: str = "randreal") -> BridgeConfig:
        """Build a config whose sizes come from probing the two backbones."""
        new.check_block_index(in_layer, "in_layer (new-model block m)")
        old.check_block_index(out_layer, "out_layer (old-model block l)")
        d_in = new.probe()[in_layer].out_dim
        target = old.probe()[out_layer]
        return cls(in_layer=in_layer, out_layer=out_layer, rank=rank, n_prototypes=n_prototypes, d_in=d_in,
                   d_out=target.in_dim, n_tokens=target.in_tokens, spec_new=new.spec, spec_old=old.spec,
                   class_names=tuple(class_names), new_model=new_ref, old_model=old_ref,
                   prototype_init=prototype_init)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec_new"] = self.spec_new.to_dict()
        d["spec_old"] = self.spec_old.to_dict()
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BridgeConfig:
        d = dict(d)
        try:
            d["spec_new"] = SignalSpec.from_dict(d["spec_new"])
            d["spec_old"] = SignalSpec.from_dict(d["spec_old"])
            d["new_model"] = ModelRef(**d["new_model"])
            d["old_model"] = ModelRef(**d["old_model"])
            return cls(**d)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bridge_config.json is malformed: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BridgeConfig:
        return cls.from_dict(json.loads(text))
