"""Vision Transformer image encoder (Dosovitskiy et al., 2021), the image encoder of MM1 Sec. 3.2.

Patch embedding by a strided convolution, learned positional embeddings made for the preset's
``base_resolution`` and bicubically interpolated to the input's patch grid when it differs (as when MM1 runs a
ViT at a higher resolution than it was pre-trained at), pre-LN blocks, a final LayerNorm. No class token:
the connector consumes the patch features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mm1core.layers import Block, init_transformer_weights
from mm1core.vision.presets import ENCODERS, ViTPreset


class VisionTransformer(nn.Module):
    """``(N, 3, R, R)`` images -> ``(N, grid * grid, width)`` patch features, ``grid = R / patch``."""

    def __init__(self, preset: ViTPreset) -> None:
        super().__init__()
        self.preset = preset
        self.width, self.patch = preset.width, preset.patch
        self.base_grid = preset.base_resolution // preset.patch
        self.patch_embedding = nn.Conv2d(3, preset.width, kernel_size=preset.patch, stride=preset.patch)
        self.position_embedding = nn.Parameter(torch.zeros(1, self.base_grid**2, preset.width))
        self.blocks = nn.ModuleList(
            Block(preset.width, preset.heads, preset.mlp_ratio, causal=False) for _ in range(preset.depth)
        )
        self.final_norm = nn.LayerNorm(preset.width)
        init_transformer_weights(self, preset.depth)
        nn.init.normal_(self.position_embedding, std=0.02)

    def position_embeddings(self, grid: int) -> torch.Tensor:
        """``(1, grid * grid, width)``: the learned base grid, bicubically resized when ``grid`` differs."""
        if grid == self.base_grid:
            return self.position_embedding
        base = self.position_embedding.reshape(1, self.base_grid, self.base_grid, self.width).permute(0, 3, 1, 2)
        resized = F.interpolate(base, size=(grid, grid), mode="bicubic", align_corners=False)  # (1, C, g, g)
        return resized.flatten(2).transpose(1, 2)  # (1, g * g, C)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] % self.patch or images.shape[-2] != images.shape[-1]:
            raise ValueError(f"images must be square with a side divisible by {self.patch}, got {tuple(images.shape)}")
        x = self.patch_embedding(images)  # (N, C, grid, grid)
        grid = x.shape[-1]
        x = x.flatten(2).transpose(1, 2)  # (N, grid * grid, C)
        x = x + self.position_embeddings(grid)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)


def build_encoder(name: str) -> VisionTransformer:
    """The encoder registered as ``name`` in ``ENCODERS`` (every entry is a ViT preset)."""
    return VisionTransformer(ENCODERS.get(name))
