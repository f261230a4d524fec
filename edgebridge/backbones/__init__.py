"""Backbone adapters. Importing this package registers every built-in adapter.

To add an adapter: write ``backbones/<name>.py`` with a ``@register_backbone`` factory and import it below
(see docs/adding_a_backbone.md).
"""

from edgebridge.backbones import ecg_fm, generic, hubert_ecg, labram, normwear, papagei, tiny  # noqa: F401  (registration side effects)
from edgebridge.backbones.base import Backbone, BlockDims, ClassifierHead, TaskModel
from edgebridge.backbones.registry import get_backbone, get_backbone_entry, list_backbones, register_backbone

__all__ = ["Backbone", "BlockDims", "ClassifierHead", "TaskModel", "get_backbone", "get_backbone_entry",
           "list_backbones", "register_backbone"]
