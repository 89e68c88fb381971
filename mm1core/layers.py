"""Transformer pieces shared by the image encoder and the decoder LM: attention -> MLP -> pre-LN block.

Pre-LN blocks (Xiong et al., 2020) as in GPT-2 and ViT: ``x + attention(norm(x))``, then ``x + mlp(norm(x))``.
Attention runs through ``F.scaled_dot_product_attention`` (fused kernels on CPU and GPU). Every linear layer
has a bias; ``LMPreset.non_embedding_params`` counts exactly these parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerCache:
    """Keys and values of the tokens seen so far by one attention layer, for incremental decoding."""

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None  # (B, heads, T_past, head_dim)
        self.values: torch.Tensor | None = None

    def extend(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Appends the new tokens' keys and values; returns those of all tokens so far."""
        if self.keys is not None and self.values is not None:
            keys, values = torch.cat([self.keys, keys], dim=2), torch.cat([self.values, values], dim=2)
        self.keys, self.values = keys, values
        return keys, values


class SelfAttention(nn.Module):
    """Multi-head self-attention; ``causal`` applies when no explicit mask is given."""

    def __init__(self, width: int, heads: int, causal: bool) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(
        self, x: torch.Tensor, attention_mask: torch.Tensor | None = None, cache: LayerCache | None = None
    ) -> torch.Tensor:
        """``x`` (B, T, C); ``attention_mask`` (B, 1, T, T_past + T) bool, True = may attend."""
        batch, length, width = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads)  # (B, T, 3, nh, hs)
        queries, keys, values = qkv.permute(2, 0, 3, 1, 4)  # each (B, nh, T, hs)
        if cache is not None:
            keys, values = cache.extend(keys, values)  # (B, nh, T_past + T, hs)
        is_causal = self.causal and attention_mask is None
        y = F.scaled_dot_product_attention(queries, keys, values, attn_mask=attention_mask, is_causal=is_causal)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, hidden)
        self.proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attention(LN(x))`` then ``x + mlp(LN(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, causal: bool) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads, causal)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = MLP(width, int(mlp_ratio * width))

    def forward(
        self, x: torch.Tensor, attention_mask: torch.Tensor | None = None, cache: LayerCache | None = None
    ) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), attention_mask, cache)
        return x + self.mlp(self.mlp_norm(x))


def init_transformer_weights(module: nn.Module, depth: int) -> None:
    """GPT-2 initialisation: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2 depth)."""
    for name, child in module.named_modules():
        if isinstance(child, (nn.Linear, nn.Embedding)):
            std = 0.02 / (2 * depth) ** 0.5 if name.endswith(("attention.out", "mlp.proj")) else 0.02
            nn.init.normal_(child.weight, std=std)
        if isinstance(child, nn.Linear) and child.bias is not None:
            nn.init.zeros_(child.bias)
