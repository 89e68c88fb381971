"""A small CLIP-style text encoder (Radford et al., 2021, Sec. 2.4) for the image-text objectives.

Token and learned positional embeddings, causal pre-LN blocks (the ViT's ``mm1core.layers.Block`` under a causal
mask), a final LayerNorm, then the feature of each caption's last non-pad token (its ``<eos>`` when the caption ends
with one, as CLIP pools at ``[EOS]``) projected to the shared embedding width. Causal attention makes the padding
after that token invisible to it, so no padding mask is needed.
"""

from __future__ import annotations

import torch
from torch import nn

from mm1core.layers import Block, init_transformer_weights, prefix_causal_mask
from mm1core.objectives.presets import TextTowerPreset


class TextTower(nn.Module):
    """``token_ids`` (N, T), right-padded with ``pad_id`` -> (N, embed_width) caption embeddings (not normalised).

    ``pad_id`` is the tokenizer's (0 for the world and byte tokenizers of ``mm1core.data.tokenizer``).
    """

    def __init__(self, preset: TextTowerPreset, vocab_size: int, pad_id: int = 0) -> None:
        super().__init__()
        self.preset, self.pad_id = preset, pad_id
        self.token_embedding = nn.Embedding(vocab_size, preset.width)
        self.position_embedding = nn.Parameter(torch.zeros(preset.context_length, preset.width))
        self.blocks = nn.ModuleList(Block(preset.width, preset.heads, preset.mlp_width) for _ in range(preset.depth))
        self.final_norm = nn.LayerNorm(preset.width)
        self.projection = nn.Linear(preset.width, preset.embed_width, bias=False)
        init_transformer_weights(self, preset.depth)
        nn.init.normal_(self.position_embedding, std=0.01)  # CLIP's init
        nn.init.normal_(self.projection.weight, std=preset.width**-0.5)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        batch, length = token_ids.shape
        if length > self.preset.context_length:
            raise ValueError(f"{length} tokens exceed the text tower's context of {self.preset.context_length}")
        x = self.token_embedding(token_ids) + self.position_embedding[:length]  # (N, T, C)
        mask = prefix_causal_mask(length, 0, token_ids.device)  # (T, T)
        for block in self.blocks:
            x = block(x, mask)
        x = self.final_norm(x)
        last = ((token_ids != self.pad_id).sum(dim=1) - 1).clamp(min=0)  # (N,): index of the last real token
        pooled = x[torch.arange(batch, device=x.device), last]  # (N, C)
        return self.projection(pooled)  # (N, embed_width)
