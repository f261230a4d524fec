"""Loading checkpoints safely and strictly.

No pickle by default: ``.safetensors`` is read directly and ``.pt/.pth/.bin`` with ``torch.load(weights_only=True)``.
A full pickle (which can run arbitrary code) is only read when the caller passes ``trust_pickle=True``.
A checkpoint that does not fit the model raises CheckpointMismatch listing the missing, unexpected and
mis-shaped keys — never a silent random init.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read (corrupt, unsafe, or of an unknown structure)."""


class CheckpointMismatch(CheckpointError):
    """A state dict does not fit a model."""


def read_state_dict(path: str | Path, *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a tensor dict from ``path``, unwrapping common containers (``{"state_dict": ...}``, ``{"model": ...}``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{path} is not a valid safetensors file: {exc}") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} contains pickled Python objects beyond plain tensors; loading it can run arbitrary code. "
            f"If you trust its source, pass --trust-checkpoint (trust_pickle=True). Details: {exc}") from exc
    except (RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {exc}") from exc
    if trust_pickle:
        log.warning("loaded %s with full pickle (trusted by the caller)", path)
    return unwrap_state_dict(obj, str(path))


def unwrap_state_dict(obj: object, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the tensor dict inside a checkpoint object (a bare state dict or one nested under a known key)."""
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        for key in _NESTED_KEYS:
            if key in obj:
                return unwrap_state_dict(obj[key], f"{where}[{key!r}]")
    raise CheckpointError(f"{where}: no state dict found (top-level keys: "
                          f"{sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__})")


def strip_prefixes(state: Mapping[str, torch.Tensor], prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Remove the first matching prefix (e.g. ``module.``, ``student.``) from every key that has it."""
    prefixes = tuple(prefixes)
    out = {}
    for key, value in state.items():
        for p in prefixes:
            if key.startswith(p):
                key = key[len(p):]
                break
        out[key] = value
    return out


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str = "checkpoint") -> None:
    """Load ``state`` into ``module``; raise CheckpointMismatch naming every key that does not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                        for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or mis_shaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mis_shaped)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", … ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{label} keys: {shown}")
        raise CheckpointMismatch(f"{what} does not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(dict(state), strict=True)
