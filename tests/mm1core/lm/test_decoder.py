"""The decoder LM: parameter count per preset, causality, KV-cache parity, padding."""

from __future__ import annotations

import pytest
import torch

from mm1core.lm import DECODERS
from mm1core.lm.decoder import build_decoder

VOCAB = 50


@pytest.mark.parametrize("name", DECODERS.names(), ids=DECODERS.names())
def test_non_embedding_params_match_the_preset(name: str) -> None:
    assert build_decoder(name, VOCAB).non_embedding_params() == DECODERS.get(name).non_embedding_params()


def test_output_head_is_tied_to_the_embedding() -> None:
    decoder = build_decoder("lm-tiny", VOCAB)
    embedding = decoder.token_embedding.weight
    total = sum(parameter.numel() for parameter in decoder.parameters())
    assert total == decoder.non_embedding_params() + embedding.numel() + decoder.position_embedding.weight.numel()


def test_is_causal() -> None:
    torch.manual_seed(0)
    decoder = build_decoder("lm-tiny", VOCAB).eval()
    ids = torch.randint(0, VOCAB, (1, 12))
    changed = ids.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % VOCAB
    torch.testing.assert_close(decoder(decoder.embed(ids))[:, :8], decoder(decoder.embed(changed))[:, :8])


def test_kv_cache_matches_full_recompute() -> None:
    torch.manual_seed(0)
    decoder = build_decoder("lm-tiny", VOCAB).eval()
    ids = torch.randint(0, VOCAB, (2, 10))
    full = decoder(decoder.embed(ids))
    cache = decoder.new_cache()
    prefix = decoder(decoder.embed(ids[:, :6]), cache=cache)
    steps = [decoder(decoder.embed(ids[:, t : t + 1]), cache=cache) for t in range(6, 10)]
    torch.testing.assert_close(torch.cat([prefix, *steps], dim=1), full, atol=1e-5, rtol=1e-5)


def test_left_padding_with_mask_and_positions_changes_nothing() -> None:
    torch.manual_seed(0)
    decoder = build_decoder("lm-tiny", VOCAB).eval()
    ids = torch.randint(1, VOCAB, (1, 7))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    padding_mask = torch.tensor([[False] * 3 + [True] * 7])
    positions = (padding_mask.cumsum(1) - 1).clamp(min=0)
    logits = decoder(decoder.embed(padded), positions, padding_mask)
    torch.testing.assert_close(logits[:, 3:], decoder(decoder.embed(ids)), atol=1e-5, rtol=1e-5)
    assert torch.isfinite(logits).all()
