"""The vision-language connector interface (MM1 Sec. 3.2, Fig. 4): image-encoder patches -> LM-width tokens.

A connector turns each image's ``(P, encoder_width)`` patch features (``P = grid * grid``) into a fixed number
of ``lm_width`` vectors, which the model splices into the decoder's input at the image's token positions.
Concrete connectors are registered by name in ``mm1core.connectors.CONNECTORS`` and built with
``CONNECTORS.get(name).load()(encoder_width, lm_width, num_tokens)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class Connector(nn.Module, ABC):
    """``forward``: ``(N, P, encoder_width)`` patch features -> ``(N, num_tokens, lm_width)`` image tokens."""

    def __init__(self, encoder_width: int, lm_width: int, num_tokens: int) -> None:
        super().__init__()
        self.encoder_width, self.lm_width, self.num_tokens = encoder_width, lm_width, num_tokens

    @abstractmethod
    def forward(self, patches: torch.Tensor) -> torch.Tensor: ...
