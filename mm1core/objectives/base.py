"""What every stage-0 objective is: a module around the image encoder that returns the loss of a batch."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from mm1core.vision.vit import VisionTransformer


class Objective(nn.Module, ABC):
    """An image-encoder pre-training objective (MM1 Sec. 3.2 compares encoders trained by several of them).

    It holds the ``encoder`` it trains and whatever it trains beside it (a text tower and projections, a pixel
    head): all of them are the module's parameters, so one optimizer over ``objective.parameters()`` trains them
    together, and ``objective.encoder`` is what a later stage keeps.
    """

    def __init__(self, encoder: VisionTransformer) -> None:
        super().__init__()
        self.encoder = encoder

    @abstractmethod
    def forward(self, images: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``images`` (N, 3, R, R) and, for the image-text objectives, the captions' ``token_ids`` (N, T),
        right-padded -> the scalar loss of the batch."""
