"""Transformer pieces of the ViT image encoder: attention -> MLP -> pre-LN block.

Pre-LN blocks (Xiong et al., 2020) as in ViT and CLIP: ``x + attention(norm(x))``, then ``x + mlp(norm(x))``.
Attention is bidirectional unless given a mask (``prefix_causal_mask``: AIM's prefix attention, CLIP's causal text
tower) and runs through ``F.scaled_dot_product_attention`` (fused kernels on CPU and GPU) with the usual
``1 / sqrt(head_dim)`` scale. Every linear layer has a bias; ``ViTPreset.params`` counts exactly
these parameters. The activation and the LayerNorm epsilon are configurable so that pretrained CLIP (QuickGELU),
OpenCLIP (GELU) and SigLIP (tanh GELU, eps 1e-6) weights compute what they were trained to compute.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's GELU approximation ``x * sigmoid(1.702 x)`` (Radford et al., 2021; Hendrycks & Gimpel)."""
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,  # exact erf GELU: ViT, OpenCLIP
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # SigLIP (HF "gelu_pytorch_tanh")
    "quick_gelu": quick_gelu,  # OpenAI CLIP
}


def prefix_causal_mask(
    length: int, prefix: int | torch.Tensor = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean attention mask, ``True`` where a query may attend to a key: token ``i`` sees token ``j`` when
    ``j <= i`` or ``j < prefix`` (prefix attention, El-Nouby et al., 2024, Sec. 3; ``prefix=0`` is plain causal).

    An int ``prefix`` gives ``(T, T)``; a ``(B,)`` tensor of per-sequence prefixes gives ``(B, 1, T, T)``, which
    broadcasts over heads in ``F.scaled_dot_product_attention``.
    """
    positions = torch.arange(length, device=device)
    causal = positions[None, :] <= positions[:, None]  # (T, T): key j <= query i
    if isinstance(prefix, int):
        return causal | (positions[None, :] < prefix)  # (T, T)
    in_prefix = positions[None, None, :] < prefix.to(positions.device)[:, None, None]  # (B, 1, T)
    return (causal[None] | in_prefix)[:, None]  # (B, 1, T, T)


class SelfAttention(nn.Module):
    """Multi-head bidirectional self-attention. ``qkv`` holds the query, key and value projections stacked in
    that order along its output dimension, each head-major (as OpenCLIP's ``in_proj_weight``)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, T, C) -> (B, T, C); ``attention_mask`` (T, T) or (B, 1, T, T), boolean, ``True`` = attend
        (``None``: every token sees every token)."""
        batch, length, width = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads)  # (B, T, 3, nh, hs)
        queries, keys, values = qkv.permute(2, 0, 3, 1, 4)  # each (B, nh, T, hs)
        y = F.scaled_dot_product_attention(queries, keys, values, attn_mask=attention_mask)  # (B, nh, T, hs)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))  # (B, T, C)


class MLP(nn.Module):
    """``width -> hidden -> width`` with the named activation between (a key of ``ACTIVATIONS``)."""

    def __init__(self, width: int, hidden: int, activation: str = "gelu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
        self.activation = activation
        self.fc = nn.Linear(width, hidden)
        self.proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(ACTIVATIONS[self.activation](self.fc(x)))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attention(LN(x))`` then ``x + mlp(LN(x))``."""

    def __init__(
        self, width: int, heads: int, mlp_width: int, activation: str = "gelu", norm_eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(width, eps=norm_eps)
        self.attention = SelfAttention(width, heads)
        self.mlp_norm = nn.LayerNorm(width, eps=norm_eps)
        self.mlp = MLP(width, mlp_width, activation)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), attention_mask)
        return x + self.mlp(self.mlp_norm(x))


def init_transformer_weights(module: nn.Module, depth: int) -> None:
    """GPT-2 initialisation: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2 depth)."""
    for name, child in module.named_modules():
        if isinstance(child, (nn.Linear, nn.Embedding)):
            std = 0.02 / (2 * depth) ** 0.5 if name.endswith(("attention.out", "mlp.proj")) else 0.02
            nn.init.normal_(child.weight, std=std)
        if isinstance(child, nn.Linear) and child.bias is not None:
            nn.init.zeros_(child.bias)
