"""The vision-language connector interface (MM1 Sec. 3.2, Fig. 4): image-encoder patches -> LM-width tokens.

A connector turns each image's ``(P, encoder_width)`` patch features (``P = grid * grid``) into a fixed number
of ``lm_width`` vectors, which the model splices into the decoder's input at the image's token positions.
Concrete connectors are registered by name in ``mm1core.connectors.CONNECTORS`` and built from their config
(``mm1core.connectors.config``) with ``build_connector(config, encoder_width, lm_width)``, which calls
``Class(encoder_width, lm_width, num_tokens, **family_fields)``.

Every connector ends in the same readout MLP (``readout_mlp``), so an ablation over connectors varies only
how the patches are reduced to ``num_tokens`` (MM1 Sec. 3.2 compares exactly that).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import nn


class Connector(nn.Module, ABC):
    """``forward``: ``(N, P, encoder_width)`` patch features -> ``(N, num_tokens, lm_width)`` image tokens."""

    def __init__(self, encoder_width: int, lm_width: int, num_tokens: int) -> None:
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"a connector gives at least one token, got num_tokens={num_tokens}")
        self.encoder_width, self.lm_width, self.num_tokens = encoder_width, lm_width, num_tokens

    @abstractmethod
    def forward(self, patches: torch.Tensor) -> torch.Tensor: ...


def readout_mlp(in_width: int, lm_width: int) -> nn.Sequential:
    """``(..., in_width)`` -> ``(..., lm_width)``: Linear -> GELU -> Linear (LLaVA-1.5's two-layer projector)."""
    return nn.Sequential(nn.Linear(in_width, lm_width), nn.GELU(), nn.Linear(lm_width, lm_width))


def patch_map(patches: torch.Tensor, side: int) -> torch.Tensor:
    """``(N, grid * grid, C)`` patches -> ``(N, C, grid, grid)`` map, refusing grids that cannot pool to ``side``."""
    count, num_patches, width = patches.shape
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise ValueError(f"{num_patches} patches do not form a square grid")
    if grid < side:
        raise ValueError(f"cannot pool {num_patches} patches ({grid}x{grid}) into {side}x{side} tokens")
    return patches.transpose(1, 2).reshape(count, width, grid, grid)  # (N, C, grid, grid), row-major patches


def square_side(num_tokens: int, family: str) -> int:
    """``sqrt(num_tokens)`` for the pooling connectors, which give ``side x side`` tokens."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"{family} needs a square token count (1, 4, 9, 16, ...), got {num_tokens}")
    return side
