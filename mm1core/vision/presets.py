"""Named ViT shapes, from CPU-trainable toys to the real ViT-L/14 and ViT-H/14 (torch-free).

A preset fixes the encoder's shape (width, depth, heads, patch, MLP width) and its style: whether it has a class
token, a LayerNorm before the blocks (CLIP's ``pre_layrnorm``, OpenCLIP's ``ln_pre``), a LayerNorm on the tokens
it returns, which GELU, and whether the patch convolution has a bias. The resolution is not part of a preset:
the positional embeddings are made for the resolution the encoder is built at (``VisionTransformer(preset,
resolution)``) and interpolated for any other.

The real shapes follow the encoders MM1 ablates (MM1 Sec. 3.2, Table 1: CLIP ViT-L/14 and DFN-5B ViT-H/14 at
224-378 px) and SigLIP SO400M/14 (Zhai et al., 2023; Alabdulmohsin et al., 2023).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from mm1core.registry import Registry

Activation = Literal["gelu", "gelu_tanh", "quick_gelu"]

FROM_CHECKPOINT = "from-checkpoint"
"""Encoder name meaning "shape and style come from the checkpoint" (never registered in ``ENCODERS``)."""


@dataclass(frozen=True)
class ViTPreset:
    """Shape and style of a ViT image encoder (Dosovitskiy et al., 2021): ``depth`` pre-LN blocks of ``width``.

    ``post_norm`` applies the final LayerNorm to the patch tokens the encoder returns (OpenCLIP's ``ln_post`` on
    all tokens, SigLIP's ``post_layernorm``); HF CLIP's ``last_hidden_state`` has none. ``quick_gelu`` is
    ``x * sigmoid(1.702 x)`` (OpenAI CLIP), ``gelu_tanh`` the tanh approximation (SigLIP).
    """

    width: int
    depth: int
    heads: int
    patch: int
    mlp_width: int
    class_token: bool = False
    pre_norm: bool = False
    post_norm: bool = True
    activation: Activation = "gelu"
    patch_bias: bool = True
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for field in ("width", "depth", "heads", "patch", "mlp_width"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by {self.heads} heads")

    def grid(self, resolution: int) -> int:
        """Side of the patch grid at ``resolution``: ``resolution / patch``."""
        if resolution <= 0 or resolution % self.patch:
            raise ValueError(f"resolution {resolution} is not a positive multiple of the patch size {self.patch}")
        return resolution // self.patch

    def params(self, resolution: int) -> int:
        """Exact parameter count of ``VisionTransformer(self, resolution)`` (it depends on the resolution only
        through the positional embeddings)."""
        width, hidden = self.width, self.mlp_width
        tokens = self.grid(resolution) ** 2 + self.class_token
        embedding = 3 * self.patch**2 * width + self.patch_bias * width + self.class_token * width + tokens * width
        block_norms = 2 * 2 * width
        attention = (3 * width * width + 3 * width) + (width * width + width)  # qkv and output projections
        mlp = (width * hidden + hidden) + (hidden * width + width)
        norms = 2 * width * (self.pre_norm + self.post_norm)
        return embedding + self.depth * (block_norms + attention + mlp) + norms

    def tiny(self) -> ViTPreset:
        """A CPU-fast flavour of the same style (patch, flags, activation, eps) for tests to build and step."""
        return replace(self, width=32, depth=2, heads=2, mlp_width=64)


# CLIP / OpenAI style (Radford et al., 2021; HF CLIPVisionModel): class token, pre-norm, QuickGELU, no patch
# bias; HF's ``last_hidden_state`` is the last block's output, without ``post_layernorm``.
_OPENAI_CLIP = dict(class_token=True, pre_norm=True, post_norm=False, activation="quick_gelu", patch_bias=False)
# OpenCLIP style as trained for DFN-5B (Fang et al., 2023; MM1's image encoder): as CLIP, but the token output is
# ``ln_post`` applied to every token. DFN-5B was trained with QuickGELU (OpenCLIP pairs its ``dfn5b`` weights with
# ``ViT-H-14-378-quickgelu``); LAION's OpenCLIP ViT-H/14 uses exact GELU instead and needs ``FROM_CHECKPOINT``.
_DFN = dict(class_token=True, pre_norm=True, post_norm=True, activation="quick_gelu", patch_bias=False)
# SigLIP style (Zhai et al., 2023; HF SiglipVisionModel): no class token, no pre-norm, tanh GELU, eps 1e-6.
_SIGLIP = dict(class_token=False, pre_norm=False, post_norm=True, activation="gelu_tanh", norm_eps=1e-6)

ENCODERS: Registry[ViTPreset] = Registry("encoder")
# Toys: no class token, final LayerNorm, GELU; they train on a CPU.
ENCODERS.register("vit-tiny", ViTPreset(width=64, depth=4, heads=4, patch=8, mlp_width=256))
ENCODERS.register("vit-small", ViTPreset(width=96, depth=4, heads=4, patch=8, mlp_width=384))
ENCODERS.register("vit-base-toy", ViTPreset(width=128, depth=4, heads=4, patch=8, mlp_width=512))
# Real shapes: instantiable (and loadable from checkpoints), not trained here.
ENCODERS.register("vit-b-16", ViTPreset(width=768, depth=12, heads=12, patch=16, mlp_width=3072, **_OPENAI_CLIP))
ENCODERS.register("vit-l-14", ViTPreset(width=1024, depth=24, heads=16, patch=14, mlp_width=4096, **_OPENAI_CLIP))
ENCODERS.register("vit-h-14", ViTPreset(width=1280, depth=32, heads=16, patch=14, mlp_width=5120, **_DFN))
ENCODERS.register("siglip-so400m-14", ViTPreset(width=1152, depth=27, heads=16, patch=14, mlp_width=4304, **_SIGLIP))
