"""Checkpoint key conversions shared by the foundation-model adapters.

Official checkpoints were saved by different torch / framework versions, so the same parameter can carry two
names. The one that bites every wav2vec-style model is weight normalisation: ``torch.nn.utils.weight_norm``
(torch < 2.1, fairseq, old transformers) stores ``<conv>.weight_g`` / ``<conv>.weight_v``, while
``torch.nn.utils.parametrizations.weight_norm`` (what the adapters here build) stores
``<conv>.parametrizations.weight.original0`` / ``original1``. The tensors are identical (g = original0,
v = original1), only the keys differ, so a rename is all it takes.

Some official files also pickle a config object next to the weights (HuBERT-ECG's ``model_config``, fairseq's
``cfg``), which needs the authors' Python packages to unpickle. ``read_official_state_dict`` reads such a file
(only when the caller trusts it) with classes that cannot be imported replaced by inert placeholders, so the
tensors can be had without installing transformers or fairseq.
"""

from __future__ import annotations

import logging
import pickle
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgebridge.backbones.weights import (
    CheckpointError,
    load_strict,
    read_state_dict,
    strip_prefixes,
    unwrap_state_dict,
)

log = logging.getLogger(__name__)

LEGACY_WEIGHT_NORM = ("weight_g", "weight_v")
PARAMETRIZED_WEIGHT_NORM = ("parametrizations.weight.original0", "parametrizations.weight.original1")


def _rename_suffixes(state: Mapping[str, torch.Tensor], old: tuple[str, str],
                     new: tuple[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for o, n in zip(old, new, strict=True):
            if key.endswith("." + o):
                key = key[: -len(o)] + n
                break
        out[key] = value
    return out


def weight_norm_to_parametrized(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``*.weight_g`` / ``*.weight_v`` to ``*.parametrizations.weight.original0`` / ``original1``."""
    return _rename_suffixes(state, LEGACY_WEIGHT_NORM, PARAMETRIZED_WEIGHT_NORM)


def weight_norm_to_legacy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``*.parametrizations.weight.original0/1`` to ``*.weight_g`` / ``*.weight_v`` (the reverse)."""
    return _rename_suffixes(state, PARAMETRIZED_WEIGHT_NORM, LEGACY_WEIGHT_NORM)


def match_weight_norm_style(state: Mapping[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """Convert the weight-norm keys of ``state`` to whichever style ``module`` itself uses.

    A module that uses neither style gets ``state`` back unchanged (so unrelated keys still surface as
    missing/unexpected in ``load_strict``).
    """
    own = module.state_dict().keys()
    if any(k.endswith(PARAMETRIZED_WEIGHT_NORM[0]) for k in own):
        return weight_norm_to_parametrized(state)
    if any(k.endswith("." + LEGACY_WEIGHT_NORM[0]) for k in own):
        return weight_norm_to_legacy(state)
    return dict(state)


# --- reading files that pickle foreign config objects ------------------------------------------------------------
class MissingClass:
    """Inert stand-in for a pickled class whose module cannot be imported (e.g. a transformers config).

    It accepts any constructor arguments and any pickled state and keeps them, so the surrounding tensors load.
    """

    _qualname = "MissingClass"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_args"] = args
        self.__dict__["_kwargs"] = kwargs

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<unimportable pickled object {self._qualname}>"


class _TolerantUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            log.info("checkpoint pickles %s.%s, which is not importable here; using a placeholder", module, name)
            return type(name, (MissingClass,), {"_qualname": f"{module}.{name}"})


_TOLERANT_PICKLE = types.SimpleNamespace(Unpickler=_TolerantUnpickler, load=pickle.load, __name__="tolerant_pickle")


def read_official_state_dict(path: str | Path, *, trust_pickle: bool = False,
                             hint: str = "") -> dict[str, torch.Tensor]:
    """Read the tensor dict of an official checkpoint.

    Without ``trust_pickle`` this is exactly ``read_state_dict`` (safetensors, or ``torch.load(weights_only=True)``);
    a file that pickles Python objects is refused with a message saying how to allow it (``hint`` adds what the
    file is). With ``trust_pickle`` the file is fully unpickled, but classes from packages that are not installed
    (transformers, fairseq, omegaconf...) become ``MissingClass`` placeholders instead of failing the load.
    """
    path = Path(path)
    if not trust_pickle or path.suffix == ".safetensors":
        try:
            return read_state_dict(path, trust_pickle=False)
        except CheckpointError as exc:
            if hint and "trust" in str(exc):
                raise CheckpointError(f"{hint} {exc}") from exc
            raise
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    log.warning("loading %s with full pickle (trusted by the caller)", path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TOLERANT_PICKLE)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {exc}") from exc
    return unwrap_state_dict(obj, str(path))


def load_official(module: nn.Module, path: str | Path, *, trust_pickle: bool = False,
                  prefixes: Iterable[str] = ("module.",), drop_prefixes: Iterable[str] = (), hint: str = "",
                  what: str | None = None) -> None:
    """Read an official checkpoint, normalise its keys for ``module`` and load it strictly.

    Args:
        module: the adapter (its ``state_dict`` keys are the official names).
        path: ``.safetensors``, ``.pt``, ``.pth`` or ``.bin`` file.
        trust_pickle: allow a full pickle (see ``read_official_state_dict``).
        prefixes: key prefixes to strip (DataParallel's ``module.``, a wrapper's ``hubert.``...).
        drop_prefixes: keys starting with these are dropped before loading (training-only extras that the
            architecture does not model, e.g. an optimizer-side buffer). Keep this empty unless a key really
            has no module here: dropped keys are logged.
        hint: sentence naming the official file, prepended to read errors.
        what: name used in CheckpointMismatch messages (default: the file name).

    Raises:
        CheckpointError: unreadable or refused file. CheckpointMismatch: missing / unexpected / mis-shaped keys.
    """
    state = read_official_state_dict(path, trust_pickle=trust_pickle, hint=hint)
    state = strip_prefixes(state, prefixes)
    drop = tuple(drop_prefixes)
    if drop:
        dropped = sorted(k for k in state if k.startswith(drop))
        if dropped:
            log.info("ignoring %d checkpoint keys not modelled here: %s", len(dropped), dropped[:8])
        state = {k: v for k, v in state.items() if not k.startswith(drop)}
    state = match_weight_norm_style(state, module)
    load_strict(module, state, what or Path(path).name)
