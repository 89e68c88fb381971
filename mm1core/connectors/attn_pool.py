"""Attention-pooling connector (MM1 Sec. 3.2, Fig. 4 "Attention Pooling"): k learnable queries cross-attend
to the patch features, then an MLP to the LM width.

MM1 describes it as "k learnable queries" whose cross-attention over the image features gives k image tokens;
this is one cross-attention layer of the Perceiver Resampler (Alayrac et al., 2022, Flamingo Sec. 2.1) or
Q-Former-like pooling (Li et al., 2023, BLIP-2), without its self-attention and feed-forward layers. The
patches carry position only through the ViT's positional embeddings: the pooling itself is invariant to their
order, and the token count need not be a square.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mm1core.connectors.base import Connector, readout_mlp
from mm1core.connectors.sizes import ATTN_POOL_HEADS


class AttentionPoolConnector(Connector):
    """``(N, P, C_enc)`` -> ``(N, num_tokens, D)`` for any ``1 <= num_tokens <= P``.

    ``queries + attention(queries, LayerNorm(patches))`` -> LayerNorm -> readout MLP. The attention
    runs at the encoder width with ``heads`` heads (``C_enc`` must divide by it).
    """

    def __init__(self, encoder_width: int, lm_width: int, num_tokens: int, *, heads: int = ATTN_POOL_HEADS) -> None:
        super().__init__(encoder_width, lm_width, num_tokens)
        if encoder_width % heads:
            raise ValueError(f"attn-pool: encoder width {encoder_width} does not split into {heads} heads")
        self.heads = heads
        self.queries = nn.Parameter(torch.randn(num_tokens, encoder_width) * 0.02)
        self.patch_norm = nn.LayerNorm(encoder_width)
        self.query_proj = nn.Linear(encoder_width, encoder_width)
        self.key_value_proj = nn.Linear(encoder_width, 2 * encoder_width)
        self.out_proj = nn.Linear(encoder_width, encoder_width)
        self.pooled_norm = nn.LayerNorm(encoder_width)
        self.projection = readout_mlp(encoder_width, lm_width)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, L, C)`` -> ``(N, heads, L, C / heads)``."""
        count, length, width = x.shape
        return x.view(count, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        count, num_patches, width = patches.shape
        if num_patches < self.num_tokens:
            raise ValueError(f"attn-pool: more tokens than patches ({self.num_tokens} > {num_patches})")
        queries = self.query_proj(self.queries).expand(count, -1, -1)  # (N, k, C)
        keys, values = self.key_value_proj(self.patch_norm(patches)).chunk(2, dim=-1)  # 2 x (N, P, C)
        attended = F.scaled_dot_product_attention(
            self.split_heads(queries), self.split_heads(keys), self.split_heads(values)
        )  # (N, heads, k, C / heads)
        attended = attended.transpose(1, 2).reshape(count, self.num_tokens, width)  # (N, k, C)
        pooled = self.queries + self.out_proj(attended)  # (N, k, C), residual on the queries
        return self.projection(self.pooled_norm(pooled))  # (N, k, D)
