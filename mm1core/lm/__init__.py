"""Decoder-only language models (Llama-style, optionally MoE). Importing this package does not import torch.

``presets`` names the shapes (``DECODERS``), ``config`` the MoE settings, ``checkpoints`` reads Hugging Face
checkpoints (their ``config.json`` torch-free); ``decoder``, ``layers`` and ``moe`` are the torch modules.
"""

from mm1core.lm.checkpoints import checkpoint_problem, preset_from_checkpoint
from mm1core.lm.config import MoEConfig
from mm1core.lm.presets import DECODERS, FROM_CHECKPOINT, LMPreset

__all__ = ["DECODERS", "FROM_CHECKPOINT", "LMPreset", "MoEConfig", "checkpoint_problem", "preset_from_checkpoint"]
