"""Image encoders. Importing this package does not import torch; ``mm1core.vision.vit.build_encoder`` does.

``checkpoint_problem`` and ``preset_from_checkpoint`` stay torch-free for HF directories and ``.safetensors``
files, so a sweep can validate an encoder checkpoint without torch.
"""

from mm1core.vision.checkpoints import FORMATS, checkpoint_problem, detect_format, preset_from_checkpoint
from mm1core.vision.presets import ENCODERS, FROM_CHECKPOINT, ViTPreset

__all__ = [
    "ENCODERS",
    "FORMATS",
    "FROM_CHECKPOINT",
    "ViTPreset",
    "checkpoint_problem",
    "detect_format",
    "preset_from_checkpoint",
]
