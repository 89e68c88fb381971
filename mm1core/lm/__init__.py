"""Decoder-only language models. Importing this package does not import torch."""

from mm1core.lm.presets import DECODERS, LMPreset

__all__ = ["DECODERS", "LMPreset"]
