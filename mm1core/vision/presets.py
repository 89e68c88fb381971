"""Named ViT shapes, from CPU-trainable toys to the real ViT-L/14 and ViT-H/14 (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from mm1core.registry import Registry


@dataclass(frozen=True)
class ViTPreset:
    """Shape of a ViT image encoder (Dosovitskiy et al., 2021): ``depth`` pre-LN blocks of ``width``."""

    width: int
    depth: int
    heads: int
    patch: int
    mlp_ratio: float = 4.0
    base_resolution: int = 32  # resolution the positional embeddings are made at


ENCODERS: Registry[ViTPreset] = Registry("encoder")
ENCODERS.register("vit-tiny", ViTPreset(width=64, depth=4, heads=4, patch=8))
ENCODERS.register("vit-small", ViTPreset(width=96, depth=4, heads=4, patch=8))
ENCODERS.register("vit-base-toy", ViTPreset(width=128, depth=4, heads=4, patch=8))
