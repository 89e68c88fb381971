"""Image encoders. Importing this package does not import torch; ``mm1core.vision.vit.build_encoder`` does."""

from mm1core.vision.presets import ENCODERS, ViTPreset

__all__ = ["ENCODERS", "ViTPreset"]
