"""Llama-style decoder-only language model (Touvron et al., 2023), the LLM of MM1 Sec. 3.

Token embedding -> ``depth`` pre-RMSNorm blocks (grouped-query attention with rotary positions, a SwiGLU MLP
or, in every k-th block when ``moe`` is given, a mixture of SwiGLU experts) -> final RMSNorm -> output head
(the embedding's transpose when tied, else its own matrix). There is no position table: RoPE rotates queries
and keys by ``position_ids``.

The decoder takes *embeddings*, not ids, so the multimodal model can splice image tokens in (MM1 Sec. 3.2).
A ``KVCache`` makes greedy decoding incremental; with left padding, the caller passes each row's position ids
and its padding mask, and a prompt then decodes the same alone as in a batch.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from mm1core.lm.checkpoints import checkpoint_problem, decoder_weights, read_config
from mm1core.lm.config import MoEConfig
from mm1core.lm.layers import Block, LayerCache, RMSNorm, RotaryEmbedding, SwiGLU
from mm1core.lm.moe import MoEFeedForward
from mm1core.lm.presets import DECODERS, FROM_CHECKPOINT, LMPreset

RESIDUAL_OUTPUTS = ("attention.output", "down")  # projections into the residual stream, incl. every expert's


class KVCache:
    """Per-layer keys/values plus which of the cached positions are real tokens (not padding)."""

    def __init__(self, depth: int) -> None:
        self.layers = [LayerCache() for _ in range(depth)]
        self.key_mask: torch.Tensor | None = None  # (B, T_past) bool

    @property
    def length(self) -> int:
        return 0 if self.key_mask is None else self.key_mask.shape[1]


def attention_mask(key_mask: torch.Tensor, num_queries: int) -> torch.Tensor:
    """``(B, 1, T_q, T_k)`` bool: causal over the last ``num_queries`` keys, padding keys hidden.

    Each query also sees itself, so a padding query's softmax is never over an empty set (which gives NaN).
    """
    num_keys = key_mask.shape[1]
    key_index = torch.arange(num_keys, device=key_mask.device)  # (T_k,)
    query_index = key_index[num_keys - num_queries :, None]  # (T_q, 1): the queries' own key positions
    allowed = (key_index <= query_index) & key_mask[:, None, :]  # (B, T_q, T_k)
    return (allowed | (key_index == query_index)).unsqueeze(1)


class Decoder(nn.Module):
    """``(B, T, D)`` input embeddings -> ``(B, T, vocab_size)`` next-token logits."""

    def __init__(self, preset: LMPreset, vocab_size: int, moe: MoEConfig | None = None) -> None:
        super().__init__()
        self.preset, self.moe = preset, moe
        self.token_embedding = nn.Embedding(vocab_size, preset.width)
        self.rotary = RotaryEmbedding(preset.head_dim, preset.rope_theta)
        self.blocks = nn.ModuleList(Block(preset, self._mlp(index)) for index in range(preset.depth))
        self.final_norm = RMSNorm(preset.width, preset.norm_eps)
        self.output = None if preset.tie_embeddings else nn.Linear(preset.width, vocab_size, bias=False)
        self._init_weights()

    def _mlp(self, index: int) -> nn.Module:
        if self.moe is not None and self.moe.is_moe_layer(index):
            return MoEFeedForward(self.preset.width, self.preset.mlp_hidden, self.moe)
        return SwiGLU(self.preset.width, self.preset.mlp_hidden)

    def _init_weights(self) -> None:
        """GPT-2 initialisation: N(0, 0.02), residual output projections scaled by 1/sqrt(2 depth); norms 1."""
        residual_std = 0.02 / math.sqrt(2 * self.preset.depth)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)) and not module.weight.is_meta:  # meta: nothing to draw
                nn.init.normal_(module.weight, std=residual_std if name.endswith(RESIDUAL_OUTPUTS) else 0.02)

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids -> ``(B, T, D)`` token embeddings (positions enter as rotations in attention)."""
        return self.token_embedding(token_ids)

    def new_cache(self) -> KVCache:
        return KVCache(self.preset.depth)

    def forward(
        self,
        embeddings: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """``embeddings`` (B, T, D); ``position_ids`` (B, T), default ``past .. past + T - 1``; ``padding_mask``
        (B, T) bool, True = real token. Without a cache or padding the plain causal kernel runs."""
        batch, length, _ = embeddings.shape
        past = 0 if cache is None else cache.length
        if position_ids is None:
            position_ids = torch.arange(past, past + length, device=embeddings.device).expand(batch, length)
        rotary = self.rotary(position_ids, embeddings.dtype)  # cos, sin: (B, T, hd)
        mask = self._attention_mask(embeddings, padding_mask, cache)
        x = embeddings
        for index, block in enumerate(self.blocks):
            x = block(x, rotary, mask, None if cache is None else cache.layers[index])
        return self.head(self.final_norm(x))  # (B, T, V)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, D) -> (B, T, V)``: the tied embedding's transpose or the untied ``output`` matrix."""
        return F.linear(x, self.token_embedding.weight) if self.output is None else self.output(x)

    def _attention_mask(
        self, embeddings: torch.Tensor, padding_mask: torch.Tensor | None, cache: KVCache | None
    ) -> torch.Tensor | None:
        """``None`` (the causal kernel) without padding or cache; else the explicit mask, the keys' padding
        mask being recorded in the cache for the next step."""
        if padding_mask is None and cache is None:
            return None
        if padding_mask is None:
            padding_mask = torch.ones(embeddings.shape[:2], dtype=torch.bool, device=embeddings.device)
        key_mask = (
            padding_mask if cache is None or cache.key_mask is None else torch.cat([cache.key_mask, padding_mask], 1)
        )
        if cache is not None:
            cache.key_mask = key_mask
        return attention_mask(key_mask, embeddings.shape[1])

    def non_embedding_params(self) -> int:
        """Parameters outside the token embedding and an untied output head (all experts counted)."""
        embedding = self.token_embedding.weight.numel() + (0 if self.output is None else self.output.weight.numel())
        return sum(parameter.numel() for parameter in self.parameters()) - embedding

    def moe_layers(self) -> list[MoEFeedForward]:
        return [block.mlp for block in self.blocks if isinstance(block.mlp, MoEFeedForward)]

    def aux_losses(self) -> dict[str, torch.Tensor]:
        """The last forward's MoE losses and statistics, averaged over the MoE layers, as ``moe_<name>``:
        ``load_balance`` and ``router_z`` with grad; ``dropped_frac``, ``expert_share_min`` and
        ``expert_share_max`` detached. Empty for a dense decoder (or before the first forward)."""
        layers = [layer.last for layer in self.moe_layers() if layer.last]
        if not layers:
            return {}
        return {f"moe_{name}": torch.stack([layer[name] for layer in layers]).mean() for name in layers[0]}

    def aux_loss(self) -> torch.Tensor:
        """The term added to the LM loss: ``load_balance_coef * load_balance + router_z_coef * router_z``
        (GShard / ST-MoE); a zero scalar for a dense decoder."""
        losses = self.aux_losses()
        if self.moe is None or not losses:
            return torch.zeros((), device=self.token_embedding.weight.device)
        return self.moe.load_balance_coef * losses["moe_load_balance"] + self.moe.router_z_coef * losses["moe_router_z"]


def build_decoder(
    name: str, vocab_size: int, *, moe: MoEConfig | None = None, checkpoint: str | None = None
) -> Decoder:
    """The decoder registered as ``name`` in ``DECODERS`` (freshly initialised, or with ``checkpoint``'s
    weights once its shape is checked against the preset), or, for ``name == FROM_CHECKPOINT``, the
    architecture and weights of the Hugging Face checkpoint directory ``checkpoint``.

    A checkpoint keeps its whole vocabulary (its ids are its tokenizer's); a larger ``vocab_size`` appends
    freshly initialised rows (e.g. for added special tokens), as ``resize_token_embeddings``."""
    if checkpoint is None:
        if name == FROM_CHECKPOINT:
            raise ValueError(f"decoder {FROM_CHECKPOINT!r} needs a checkpoint directory")
        return Decoder(DECODERS.get(name), vocab_size, moe)
    if moe is not None:
        raise ValueError("a Hugging Face checkpoint is dense; loading one into MoE layers is not supported")
    problem = checkpoint_problem(checkpoint, name)
    if problem:
        raise ValueError(problem)
    vocab_size = max(vocab_size, read_config(checkpoint)["vocab_size"])
    return load_decoder(checkpoint, vocab_size, preset=None if name == FROM_CHECKPOINT else DECODERS.get(name))


def load_decoder(
    path: str | os.PathLike[str],
    vocab_size: int | None = None,
    *,
    preset: LMPreset | None = None,
    dtype: torch.dtype | None = None,
) -> Decoder:
    """A ``Decoder`` with the Hugging Face checkpoint's shape (or ``preset``, which must match it) and weights
    (``mm1core.lm.checkpoints.decoder_weights``: vocabulary resized, cast to ``dtype``). Built on the meta device
    and filled in place, so a 7B checkpoint never holds two copies."""
    preset, vocab_size, state = decoder_weights(path, vocab_size, preset=preset, dtype=dtype)
    with torch.device("meta"):
        decoder = Decoder(preset, vocab_size)
    decoder.load_state_dict(state, strict=True, assign=True)
    decoder.rotary = RotaryEmbedding(preset.head_dim, preset.rope_theta)  # a buffer, not in the state dict
    return decoder
