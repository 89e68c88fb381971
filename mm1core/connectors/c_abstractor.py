"""C-Abstractor connector (MM1 Sec. 3.2, Fig. 4 "C-Abstractor"), after Honeybee: Cha et al., 2024, "Honeybee:
Locality-enhanced Projector for Multimodal LLM", Sec. 3.2 and Fig. 4a.

The patch features are laid out as their 2-D grid; a stage of residual convolution blocks mixes each patch with
its neighbours, adaptive average pooling reduces the grid to ``side x side``, a second stage of blocks refines
it, and an MLP reads each cell out at the LM width. The blocks are RegNet bottlenecks (Radosavovic et al., 2020)
as in Honeybee: 1x1 conv, 3x3 conv, squeeze-excitation, 1x1 conv, each conv followed by LayerNorm2d (SiLU
after the first two), a residual add, SiLU. Differences from Honeybee, for CPU-sized ablations: ``depth`` 2
blocks per stage by default (Honeybee: 3); dense 3x3 convs (RegNet groups them); no learned positional
embedding on the input (the ViT's patch features carry position already, and the zero-padded 3x3 convs see
where the grid ends). Written from the paper's description, not from Honeybee's code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mm1core.connectors.base import Connector, patch_map, readout_mlp, square_side
from mm1core.connectors.sizes import C_ABSTRACTOR_DEPTH, C_ABSTRACTOR_SE_RATIO


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each cell of a ``(N, C, H, W)`` map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (N, C, H, W)


def conv_norm(in_width: int, out_width: int, kernel: int) -> nn.Sequential:
    """Bias-free ``kernel x kernel`` conv (same padding) and a LayerNorm2d: the map keeps its height and width."""
    conv = nn.Conv2d(in_width, out_width, kernel, padding=kernel // 2, bias=False)
    return nn.Sequential(conv, LayerNorm2d(out_width))


class SqueezeExcitation(nn.Module):
    """Channel gates from the map's mean (Hu et al., 2018): ``(N, C, H, W)`` -> same shape, rescaled per channel."""

    def __init__(self, width: int) -> None:
        super().__init__()
        squeezed = max(1, width // C_ABSTRACTOR_SE_RATIO)
        self.reduce = nn.Conv2d(width, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = x.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
        gates = torch.sigmoid(self.expand(F.silu(self.reduce(gates))))  # (N, C, 1, 1)
        return x * gates


class Bottleneck(nn.Module):
    """RegNet bottleneck block, ``(N, C_in, H, W)`` -> ``(N, C, H, W)``; a 1x1 conv shortcut when C_in != C."""

    def __init__(self, in_width: int, width: int) -> None:
        super().__init__()
        self.reduce = conv_norm(in_width, width, 1)
        self.spatial = conv_norm(width, width, 3)
        self.excitation = SqueezeExcitation(width)
        self.expand = conv_norm(width, width, 1)
        self.shortcut = nn.Identity() if in_width == width else conv_norm(in_width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.spatial(F.silu(self.reduce(x))))  # the 3x3 conv is what mixes neighbouring patches
        y = self.expand(self.excitation(y))
        return F.silu(y + self.shortcut(x))


def stage(in_width: int, width: int, depth: int) -> nn.Sequential:
    """``depth`` bottlenecks; the first maps ``in_width`` to ``width``."""
    return nn.Sequential(*(Bottleneck(in_width if i == 0 else width, width) for i in range(depth)))


class CAbstractor(Connector):
    """``(N, grid * grid, C_enc)`` -> ``(N, side * side, D)`` with ``side = sqrt(num_tokens)`` <= grid.

    ``depth`` blocks before and after the pooling, at ``hidden_width`` channels (default ``C_enc``, as Honeybee
    keeps the encoder width); ``mm1core.connectors.sizes.c_abstractor_params`` counts its parameters.
    """

    def __init__(
        self,
        encoder_width: int,
        lm_width: int,
        num_tokens: int,
        *,
        depth: int = C_ABSTRACTOR_DEPTH,
        hidden_width: int | None = None,
    ) -> None:
        super().__init__(encoder_width, lm_width, num_tokens)
        if depth < 1:
            raise ValueError(f"c-abstractor needs at least one block per stage, got depth={depth}")
        self.side = square_side(num_tokens, "c-abstractor")
        hidden = hidden_width or encoder_width
        self.local_mixing = stage(encoder_width, hidden, depth)
        self.pooled_mixing = stage(hidden, hidden, depth)
        self.projection = readout_mlp(hidden, lm_width)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = patch_map(patches, self.side)  # (N, C_enc, grid, grid)
        x = self.local_mixing(x)  # (N, H, grid, grid)
        x = F.adaptive_avg_pool2d(x, self.side)  # (N, H, side, side)
        x = self.pooled_mixing(x)  # (N, H, side, side)
        x = x.flatten(2).transpose(1, 2)  # (N, num_tokens, H), row-major cells
        return self.projection(x)  # (N, num_tokens, D)
