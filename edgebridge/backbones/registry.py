"""Registry of backbone adapters: model-specific facts live only in ``backbones/<name>.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgebridge.registry import Registry


@dataclass(frozen=True)
class BackboneEntry:
    """A registered adapter.

    Attributes:
        name: registry name, e.g. ``"papagei_s"``.
        factory: ``factory(**kwargs) -> Backbone`` building the architecture (random init).
        modality: signal kind the model reads.
        description: one line for ``edgebridge models``.
        licence: licence of the official weights (shown to users).
        weights: where the official weights come from (URL or "none").
        tiny_kwargs: kwargs that build a small variant for fast tests (completeness test uses them).
        load_weights: optional ``load_weights(backbone, path, trust_pickle) -> None`` for official checkpoints.
    """

    name: str
    factory: Callable[..., Any]
    modality: str
    description: str = ""
    licence: str = "n/a"
    weights: str = "none"
    tiny_kwargs: dict[str, Any] = field(default_factory=dict)
    load_weights: Callable[..., None] | None = None


BACKBONES: Registry[BackboneEntry] = Registry("backbone")


def register_backbone(name: str, *, modality: str, description: str = "", licence: str = "n/a",
                      weights: str = "none", tiny_kwargs: dict[str, Any] | None = None,
                      load_weights: Callable[..., None] | None = None) -> Callable[[Callable[..., Any]],
                                                                                   Callable[..., Any]]:
    """Decorator registering a backbone factory under ``name``."""

    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        BACKBONES.add(name, BackboneEntry(name, factory, modality, description, licence, weights,
                                          dict(tiny_kwargs or {}), load_weights))
        return factory

    return deco


def _ensure_builtins() -> None:
    # Importing the adapter modules runs their @register_backbone decorators.
    import edgebridge.backbones  # noqa: F401


def get_backbone_entry(name: str) -> BackboneEntry:
    _ensure_builtins()
    return BACKBONES.get(name)


def get_backbone(name: str, **kwargs: Any) -> Any:
    """Build the registered backbone ``name`` (random init) with ``kwargs``."""
    return get_backbone_entry(name).factory(**kwargs)


def list_backbones() -> list[str]:
    _ensure_builtins()
    return BACKBONES.names()
