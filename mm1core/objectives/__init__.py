"""Stage-0 pre-training objectives of the image encoder, one registry entry each. Importing this does not import torch.

An objective is a small ``nn.Module`` (``mm1core.objectives.base.Objective``) that owns what it trains beside the
encoder (a text tower and projections, or a pixel head) and returns the loss of a batch. The YAML names:

- ``contrastive``: CLIP's symmetric InfoNCE over image-caption pairs (Radford et al., 2021);
- ``sigmoid``: SigLIP's pairwise sigmoid loss (Zhai et al., 2023);
- ``autoregressive``: AIM's next-patch pixel regression under prefix attention (El-Nouby et al., 2024).

``build_objective(name, encoder, **options)`` builds one; an unknown name is rejected with the valid ones listed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mm1core.objectives.presets import TEXT_TOWERS, TextTowerPreset
from mm1core.registry import Registry

if TYPE_CHECKING:
    from mm1core.objectives.base import Objective
    from mm1core.vision.vit import VisionTransformer


@dataclass(frozen=True)
class ObjectiveEntry:
    """One objective: ``builder`` is ``"module:Class"``, called as ``Class(encoder, **options)``; ``description``
    is one line for ``mm1 registry``; ``needs_captions`` says whether a batch must carry caption ids (the
    image-text objectives) or images alone do (AIM)."""

    builder: str
    description: str
    needs_captions: bool

    def load(self) -> type[Objective]:
        module, name = self.builder.split(":")
        return getattr(importlib.import_module(module), name)


OBJECTIVES: Registry[ObjectiveEntry] = Registry("objective")
OBJECTIVES.register(
    "contrastive",
    ObjectiveEntry(
        "mm1core.objectives.contrastive:ContrastiveObjective",
        "CLIP: symmetric InfoNCE over image-caption pairs, learned temperature (Radford et al., 2021)",
        needs_captions=True,
    ),
)
OBJECTIVES.register(
    "sigmoid",
    ObjectiveEntry(
        "mm1core.objectives.contrastive:SigmoidObjective",
        "SigLIP: pairwise sigmoid loss, learned temperature and bias (Zhai et al., 2023)",
        needs_captions=True,
    ),
)
OBJECTIVES.register(
    "autoregressive",
    ObjectiveEntry(
        "mm1core.objectives.autoregressive:AutoregressiveObjective",
        "AIM: next-patch normalised-pixel regression under prefix attention (El-Nouby et al., 2024)",
        needs_captions=False,
    ),
)


def build_objective(name: str, encoder: VisionTransformer, **options: Any) -> Objective:
    """The objective registered as ``name`` around ``encoder``; ``options`` go to its class (``vocab_size`` and
    ``text_tower`` for the image-text ones, ``head_width`` for AIM: see each class)."""
    return OBJECTIVES.get(name).load()(encoder, **options)


__all__ = ["OBJECTIVES", "TEXT_TOWERS", "ObjectiveEntry", "TextTowerPreset", "build_objective"]
