"""Average-pooling connector (MM1 Sec. 3.2, Fig. 4 "Avg Pool"): n x n average pooling of the patch grid,
then an MLP to the LM width (after Sun et al., 2023, as in MM1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mm1core.connectors.base import Connector, patch_map, readout_mlp, square_side


class AvgPoolConnector(Connector):
    """``(N, grid * grid, C_enc)`` -> ``(N, side * side, D)`` with ``side = sqrt(num_tokens)`` <= grid."""

    def __init__(self, encoder_width: int, lm_width: int, num_tokens: int) -> None:
        super().__init__(encoder_width, lm_width, num_tokens)
        self.side = square_side(num_tokens, "avg-pool")
        self.projection = readout_mlp(encoder_width, lm_width)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = patch_map(patches, self.side)  # (N, C_enc, grid, grid)
        x = F.adaptive_avg_pool2d(x, self.side)  # (N, C_enc, side, side)
        x = x.flatten(2).transpose(1, 2)  # (N, num_tokens, C_enc)
        return self.projection(x)  # (N, num_tokens, D)
