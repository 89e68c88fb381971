"""GPT-style decoder-only language model (Radford et al., 2019), the LLM of MM1 Sec. 3.

Token + learned position embeddings, pre-LN causal blocks, a final LayerNorm and an output head tied to the
token embedding. The decoder takes *embeddings*, not ids, so the multimodal model can splice image tokens in
(MM1 Sec. 3.2). A ``KVCache`` makes greedy decoding incremental; with left padding, the caller passes each
row's position ids and its padding mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mm1core.layers import Block, LayerCache, init_transformer_weights
from mm1core.lm.presets import DECODERS, LMPreset


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

    def __init__(self, preset: LMPreset, vocab_size: int) -> None:
        super().__init__()
        self.preset = preset
        self.token_embedding = nn.Embedding(vocab_size, preset.width)
        self.position_embedding = nn.Embedding(preset.max_seq_len, preset.width)
        self.blocks = nn.ModuleList(
            Block(preset.width, preset.heads, preset.mlp_ratio, causal=True) for _ in range(preset.depth)
        )
        self.final_norm = nn.LayerNorm(preset.width)
        init_transformer_weights(self, preset.depth)

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids -> ``(B, T, D)`` token embeddings (no positions: ``forward`` adds them)."""
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
        past = 0 if cache is None else cache.length
        if position_ids is None:
            position_ids = torch.arange(past, past + embeddings.shape[1], device=embeddings.device)[None]
        x = embeddings + self.position_embedding(position_ids)  # (B, T, D)
        mask = self._attention_mask(embeddings, padding_mask, cache)
        for index, block in enumerate(self.blocks):
            x = block(x, mask, None if cache is None else cache.layers[index])
        return F.linear(self.final_norm(x), self.token_embedding.weight)  # (B, T, V), tied head

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
        """Parameters outside the token and position embeddings (the head is tied, so it adds none)."""
        embedding = self.token_embedding.weight.numel() + self.position_embedding.weight.numel()
        return sum(parameter.numel() for parameter in self.parameters()) - embedding


def build_decoder(name: str, vocab_size: int) -> Decoder:
    """The decoder registered as ``name`` in ``DECODERS``."""
    return Decoder(DECODERS.get(name), vocab_size)
