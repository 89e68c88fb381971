"""Llama-style decoder pieces (Touvron et al., 2023): RMSNorm -> RoPE -> cached attention -> SwiGLU -> block.

Numerics follow Hugging Face's ``modeling_llama`` exactly (RMSNorm in fp32, ``rotate_half`` RoPE with cos/sin
from per-row position ids), so a Llama checkpoint loaded by ``mm1core.lm.checkpoints`` gives its own logits.
No linear layer has a bias. Attention runs through ``F.scaled_dot_product_attention`` with grouped-query
attention done by the kernel (``enable_gqa``); the cache keeps the ``kv_heads`` keys/values, not the repeats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mm1core.lm.presets import LMPreset

Rotary = tuple[torch.Tensor, torch.Tensor]  # cos, sin: each (B, T, head_dim)


class LayerCache:
    """Keys and values of the tokens seen so far by one attention layer, for incremental decoding."""

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None  # (B, kv_heads, T_past, head_dim), rotated
        self.values: torch.Tensor | None = None

    def extend(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Appends the new tokens' keys and values; returns those of all tokens so far."""
        if self.keys is not None and self.values is not None:
            keys, values = torch.cat([self.keys, keys], dim=2), torch.cat([self.values, values], dim=2)
        self.keys, self.values = keys, values
        return keys, values


class RMSNorm(nn.Module):
    """``x / rms(x) * gain`` (Zhang & Sennrich, 2019), computed in fp32 and cast back as Llama does."""

    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """RoPE (Su et al., 2021) in Hugging Face Llama's layout: frequency ``i`` rotates dims ``i`` and
    ``i + head_dim / 2`` (``rotate_half``), not adjacent pairs as in the paper."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))  # (hd/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> Rotary:
        """``position_ids`` (B, T) -> cos, sin (B, T, head_dim), computed in fp32, cast to ``dtype``."""
        angles = position_ids[..., None].float() * self.inv_freq.float()  # (B, T, hd/2)
        angles = torch.cat([angles, angles], dim=-1)  # (B, T, hd)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` over the last dim's two halves."""
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x: torch.Tensor, rotary: Rotary) -> torch.Tensor:
    """Rotates ``x`` (B, heads, T, hd) by its positions' angles."""
    cos, sin = (part.unsqueeze(1) for part in rotary)  # each (B, 1, T, hd)
    return x * cos + rotate_half(x) * sin


class CausalSelfAttention(nn.Module):
    """Grouped-query causal self-attention (Ainslie et al., 2023): ``heads`` queries share ``kv_heads``
    keys/values in groups; rotary positions on queries and keys."""

    def __init__(self, preset: LMPreset) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = preset.heads, preset.num_kv_heads, preset.head_dim
        self.query = nn.Linear(preset.width, self.heads * self.head_dim, bias=False)
        self.key = nn.Linear(preset.width, self.kv_heads * self.head_dim, bias=False)
        self.value = nn.Linear(preset.width, self.kv_heads * self.head_dim, bias=False)
        self.output = nn.Linear(self.heads * self.head_dim, preset.width, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rotary: Rotary,
        attention_mask: torch.Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """``x`` (B, T, C); ``attention_mask`` (B, 1, T, T_past + T) bool, True = may attend; ``None`` = the
        plain causal kernel (only valid without a cache)."""
        batch, length, _ = x.shape
        queries = self.query(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        keys = self.key(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        values = self.value(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        queries, keys = apply_rotary(queries, rotary), apply_rotary(keys, rotary)
        if cache is not None:
            keys, values = cache.extend(keys, values)  # (B, nkv, T_past + T, hd)
        y = F.scaled_dot_product_attention(
            queries,
            keys,
            values,
            attn_mask=attention_mask,
            is_causal=attention_mask is None,
            enable_gqa=self.kv_heads != self.heads,
        )  # (B, nh, T, hd)
        return self.output(y.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim))  # (B, T, C)


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))`` (Shazeer, 2020), the Llama MLP."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(width, hidden, bias=False)
        self.up = nn.Linear(width, hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """Pre-norm block: ``x + attention(norm(x))`` then ``x + mlp(norm(x))``; ``mlp`` is a ``SwiGLU`` or a
    mixture of them (``mm1core.lm.moe.MoEFeedForward``), ``(B, T, C) -> (B, T, C)`` either way."""

    def __init__(self, preset: LMPreset, mlp: nn.Module) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(preset.width, preset.norm_eps)
        self.attention = CausalSelfAttention(preset)
        self.mlp_norm = RMSNorm(preset.width, preset.norm_eps)
        self.mlp = mlp

    def forward(
        self,
        x: torch.Tensor,
        rotary: Rotary,
        attention_mask: torch.Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), rotary, attention_mask, cache)
        return x + self.mlp(self.mlp_norm(x))
