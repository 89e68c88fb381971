"""Average-pooling connector (MM1 Sec. 3.2, Fig. 4 "Avg Pool"): n x n average pooling of the patch grid,
then an MLP to the LM width (after Sun et al., 2023, as in MM1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mm1core.connectors.base import Connector


class AvgPoolConnector(Connector):
    """``(N, grid * grid, C_enc)`` -> ``(N, side * side, D)`` with ``side = sqrt(num_tokens)`` <= grid."""

    def __init__(self, encoder_width: int, lm_width: int, num_tokens: int) -> None:
        super().__init__(encoder_width, lm_width, num_tokens)
        self.side = math.isqrt(num_tokens)
        if self.side * self.side != num_tokens:
            raise ValueError(f"avg-pool needs a square token count, got {num_tokens}")
        self.projection = nn.Sequential(nn.Linear(encoder_width, lm_width), nn.GELU(), nn.Linear(lm_width, lm_width))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        count, num_patches, width = patches.shape
        grid = math.isqrt(num_patches)
        if grid * grid != num_patches or grid < self.side:
            raise ValueError(f"cannot pool {num_patches} patches into {self.side}x{self.side} tokens")
        x = patches.transpose(1, 2).reshape(count, width, grid, grid)  # (N, C_enc, grid, grid)
        x = F.adaptive_avg_pool2d(x, self.side)  # (N, C_enc, side, side)
        x = x.flatten(2).transpose(1, 2)  # (N, num_tokens, C_enc)
        return self.projection(x)  # (N, num_tokens, D)
