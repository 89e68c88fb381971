"""Vision Transformer image encoder (Dosovitskiy et al., 2021), the image encoder of MM1 Sec. 3.2.

Patch embedding by a strided convolution, an optional class token, learned positional embeddings made for the
resolution the encoder is built at, an optional LayerNorm before the blocks (CLIP), pre-LN blocks, an optional
LayerNorm on the output. The encoder returns the patch tokens only: the connector consumes them (MM1 Sec. 3.2,
Fig. 4), so a class token, when there is one, is dropped after the blocks.

Images at another resolution use positional embeddings bicubically interpolated to their patch grid
(``align_corners=False``), the class token's position kept as is: the recipe of ViT fine-tuning at higher
resolution (Dosovitskiy et al., 2021, Sec. 3.2), DeiT (Touvron et al., 2021) and HF CLIP/SigLIP's
``interpolate_pos_encoding``, which this matches numerically. MM1 runs its encoders at up to 378 px this way.

Attention is bidirectional; ``forward(images, causal_prefix=S)`` runs AIM's prefix-causal attention instead
(El-Nouby et al., 2024), which the ``autoregressive`` stage-0 objective (``mm1core.objectives``) trains under.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mm1core.layers import Block, init_transformer_weights, prefix_causal_mask
from mm1core.vision.checkpoints import encoder_weights
from mm1core.vision.presets import ENCODERS, FROM_CHECKPOINT, ViTPreset


def interpolate_position_embedding(embedding: torch.Tensor, grid: int) -> torch.Tensor:
    """``(1, g0 * g0, C)`` embeddings of a square grid -> ``(1, grid * grid, C)``, bicubic, ``align_corners=False``.

    Returned unchanged (the same tensor) when ``grid == g0``. Computed in float32 and cast back, as timm's
    ``resample_abs_pos_embed`` does, since bicubic kernels are not available in every low precision.
    """
    _, positions, width = embedding.shape
    old_grid = round(positions**0.5)
    if old_grid * old_grid != positions:
        raise ValueError(f"{positions} position embeddings do not form a square grid")
    if grid == old_grid:
        return embedding
    square = embedding.reshape(1, old_grid, old_grid, width).permute(0, 3, 1, 2)  # (1, C, g0, g0)
    resized = F.interpolate(square.float(), size=(grid, grid), mode="bicubic", align_corners=False)  # (1, C, g, g)
    return resized.to(embedding.dtype).flatten(2).transpose(1, 2)  # (1, g * g, C)


class VisionTransformer(nn.Module):
    """``(N, 3, R, R)`` images -> ``(N, grid * grid, width)`` patch features, ``grid = R / patch``, any ``R``
    divisible by the patch; the positional embeddings are made for ``resolution``."""

    def __init__(self, preset: ViTPreset, resolution: int) -> None:
        super().__init__()
        self.preset, self.resolution = preset, resolution
        self.width, self.patch = preset.width, preset.patch
        self.grid = preset.grid(resolution)
        self.prefix_tokens = int(preset.class_token)  # tokens before the patches: the class token, if any
        self.patch_embedding = nn.Conv2d(3, self.width, self.patch, stride=self.patch, bias=preset.patch_bias)
        self.class_embedding = nn.Parameter(torch.zeros(self.width)) if preset.class_token else None
        positions = self.prefix_tokens + self.grid**2
        self.position_embedding = nn.Parameter(torch.zeros(1, positions, self.width))
        self.pre_norm = nn.LayerNorm(self.width, eps=preset.norm_eps) if preset.pre_norm else nn.Identity()
        self.blocks = nn.ModuleList(
            Block(self.width, preset.heads, preset.mlp_width, preset.activation, preset.norm_eps)
            for _ in range(preset.depth)
        )
        self.post_norm = nn.LayerNorm(self.width, eps=preset.norm_eps) if preset.post_norm else nn.Identity()
        init_transformer_weights(self, preset.depth)
        nn.init.normal_(self.position_embedding, std=0.02)
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding, std=0.02)

    def position_embeddings(self, grid: int) -> torch.Tensor:
        """``(1, prefix + grid * grid, width)``: the learned embeddings, the grid part interpolated when ``grid``
        differs from the built one (the class token's position is kept)."""
        if grid == self.grid:
            return self.position_embedding
        prefix = self.position_embedding[:, : self.prefix_tokens]  # (1, 0 or 1, C)
        patches = interpolate_position_embedding(self.position_embedding[:, self.prefix_tokens :], grid)
        return torch.cat([prefix, patches], dim=1)  # (1, prefix + g * g, C)

    @torch.no_grad()
    def resize_position_embedding_(self, resolution: int) -> None:
        """Permanently re-make the positional embeddings for ``resolution`` (e.g. after loading weights made at
        another one). Replaces the parameter: call it before building an optimizer."""
        grid = self.preset.grid(resolution)
        resized = self.position_embeddings(grid).detach().clone()
        requires_grad = self.position_embedding.requires_grad
        self.position_embedding = nn.Parameter(resized, requires_grad=requires_grad)
        self.resolution, self.grid = resolution, grid

    def forward(self, images: torch.Tensor, causal_prefix: int | torch.Tensor | None = None) -> torch.Tensor:
        """``images`` (N, 3, R, R) -> (N, grid * grid, width).

        ``causal_prefix`` ``None`` (the default) is bidirectional attention. An int ``S`` (or an ``(N,)`` tensor, one
        per image) is AIM's prefix attention (El-Nouby et al., 2024, Sec. 3): the first ``S`` patches, in raster
        order, see each other; every later patch sees the prefix and the patches before it, none after. A class
        token, if the preset has one, counts as part of the prefix.
        """
        if images.ndim != 4 or images.shape[-1] % self.patch or images.shape[-2] != images.shape[-1]:
            raise ValueError(f"images must be square with a side divisible by {self.patch}, got {tuple(images.shape)}")
        x = self.patch_embedding(images)  # (N, C, grid, grid)
        grid = x.shape[-1]
        x = x.flatten(2).transpose(1, 2)  # (N, grid * grid, C)
        if self.class_embedding is not None:
            class_token = self.class_embedding.expand(x.shape[0], 1, -1)  # (N, 1, C)
            x = torch.cat([class_token.to(x.dtype), x], dim=1)  # (N, 1 + grid * grid, C)
        x = self.pre_norm(x + self.position_embeddings(grid))
        mask = None
        if causal_prefix is not None:
            mask = prefix_causal_mask(x.shape[1], causal_prefix + self.prefix_tokens, x.device)  # (T, T) | (N,1,T,T)
        for block in self.blocks:
            x = block(x, mask)
        return self.post_norm(x[:, self.prefix_tokens :])  # (N, grid * grid, C): patch tokens only


def build_encoder(name: str, resolution: int, checkpoint: str | None = None) -> VisionTransformer:
    """The encoder registered as ``name`` in ``ENCODERS``, made for ``resolution``; with a ``checkpoint``, its
    weights are loaded (``name`` may then be ``FROM_CHECKPOINT``) and the positional embeddings resized to
    ``resolution`` if the checkpoint was made at another one (see ``mm1core.vision.checkpoints``)."""
    if checkpoint is not None:
        return load_encoder(checkpoint, resolution, name)
    if name == FROM_CHECKPOINT:
        raise ValueError(f"encoder {FROM_CHECKPOINT!r} needs a checkpoint path")
    return VisionTransformer(ENCODERS.get(name), resolution)


def load_encoder(path: str | Path, resolution: int, name: str = FROM_CHECKPOINT) -> VisionTransformer:
    """A ``VisionTransformer`` with the checkpoint's weights (``mm1core.vision.checkpoints.encoder_weights``), its
    positional embeddings resized to ``resolution``. ``name`` is ``FROM_CHECKPOINT`` (shape and style from the
    checkpoint) or a registered preset the checkpoint must fit. Weights are cast to torch's default dtype."""
    preset, made_at, state = encoder_weights(path, name)
    with torch.device("meta"):  # no memory and no random init for weights about to be replaced
        encoder = VisionTransformer(preset, made_at)
    encoder.load_state_dict(state, strict=True, assign=True)
    if resolution != made_at:
        encoder.resize_position_embedding_(resolution)
    return encoder
