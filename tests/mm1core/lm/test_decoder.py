"""The Llama-style decoder: causality, KV-cache and left-padding parity, RoPE, every preset's tiny flavour stepped."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mm1core.lm import DECODERS, FROM_CHECKPOINT, LMPreset, MoEConfig
from mm1core.lm.decoder import Decoder, build_decoder
from mm1core.lm.layers import RotaryEmbedding, apply_rotary
from mm1core.registry import UnknownNameError

VOCAB = 50
NAMES = DECODERS.names()
GQA = LMPreset(width=32, depth=2, heads=4, kv_heads=2)
MOE = MoEConfig(num_experts=4, every_k_layers=1, top_k=2)  # eval mode: no capacity drops
VARIANTS = {"mha": (LMPreset(width=32, depth=2, heads=4), None), "gqa": (GQA, None), "gqa-moe": (GQA, MOE)}


def decoder_of(variant: str) -> Decoder:
    torch.manual_seed(0)
    preset, moe = VARIANTS[variant]
    return Decoder(preset, VOCAB, moe).eval()


@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_is_causal(variant: str) -> None:
    decoder = decoder_of(variant)
    ids = torch.randint(0, VOCAB, (1, 12))
    changed = ids.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % VOCAB
    torch.testing.assert_close(decoder(decoder.embed(ids))[:, :8], decoder(decoder.embed(changed))[:, :8])


@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_kv_cache_matches_full_recompute(variant: str) -> None:
    decoder = decoder_of(variant)
    ids = torch.randint(0, VOCAB, (2, 10))
    full = decoder(decoder.embed(ids))
    cache = decoder.new_cache()
    prefix = decoder(decoder.embed(ids[:, :6]), cache=cache)
    steps = [decoder(decoder.embed(ids[:, t : t + 1]), cache=cache) for t in range(6, 10)]
    assert cache.length == 10 and cache.layers[0].keys.shape == (2, decoder.preset.num_kv_heads, 10, 8)
    torch.testing.assert_close(torch.cat([prefix, *steps], dim=1), full, atol=1e-5, rtol=1e-5)


def greedy(decoder: Decoder, ids: torch.Tensor, padding_mask: torch.Tensor, steps: int) -> torch.Tensor:
    """The decoding loop of ``mm1core.evaluate.generate``: left-padded prompt, then one token at a time."""
    positions = (padding_mask.cumsum(1) - 1).clamp(min=0)
    cache = decoder.new_cache()
    logits = decoder(decoder.embed(ids), positions, padding_mask, cache)
    next_ids, next_positions, out = logits[:, -1].argmax(-1), positions[:, -1] + 1, []
    for _ in range(steps):
        out.append(logits[:, -1])
        step_mask = torch.ones_like(next_ids, dtype=torch.bool)[:, None]
        logits = decoder(decoder.embed(next_ids[:, None]), next_positions[:, None], step_mask, cache)
        next_ids, next_positions = logits[:, -1].argmax(-1), next_positions + 1
    return torch.stack(out, dim=1)  # (B, steps, V)


@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_left_padded_batch_decodes_as_each_row_alone(variant: str) -> None:
    decoder = decoder_of(variant)
    short, long = torch.randint(1, VOCAB, (1, 4)), torch.randint(1, VOCAB, (1, 9))
    batch = torch.cat([torch.cat([torch.zeros(1, 5, dtype=torch.long), short], 1), long])
    padding_mask = torch.ones(2, 9, dtype=torch.bool)
    padding_mask[0, :5] = False
    together = greedy(decoder, batch, padding_mask, steps=4)
    assert torch.isfinite(together).all()
    for row, ids in enumerate((short, long)):
        alone = greedy(decoder, ids, torch.ones_like(ids, dtype=torch.bool), steps=4)
        torch.testing.assert_close(together[row : row + 1], alone, atol=1e-5, rtol=1e-5)


def test_left_padding_in_one_forward_changes_nothing() -> None:
    decoder = decoder_of("gqa")
    ids = torch.randint(1, VOCAB, (1, 7))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    padding_mask = torch.tensor([[False] * 3 + [True] * 7])
    positions = (padding_mask.cumsum(1) - 1).clamp(min=0)
    logits = decoder(decoder.embed(padded), positions, padding_mask)
    torch.testing.assert_close(logits[:, 3:], decoder(decoder.embed(ids)), atol=1e-5, rtol=1e-5)


def test_rope_scores_depend_on_relative_position_only() -> None:
    torch.manual_seed(0)
    rotary = RotaryEmbedding(head_dim=16, theta=10000.0)
    query, key = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(query_position: int, key_position: int) -> torch.Tensor:
        rotated_query = apply_rotary(query, rotary(torch.tensor([[query_position]]), torch.float32))
        rotated_key = apply_rotary(key, rotary(torch.tensor([[key_position]]), torch.float32))
        return (rotated_query * rotated_key).sum()

    torch.testing.assert_close(score(7, 3), score(107, 103))
    torch.testing.assert_close(score(3, 3), (query * key).sum())
    assert not torch.allclose(score(7, 3), score(7, 4))


def test_rope_is_hugging_face_llamas_rotate_half() -> None:
    rotary = RotaryEmbedding(head_dim=4, theta=100.0)
    cos, sin = rotary(torch.tensor([[2]]), torch.float32)  # angles 2 * [1, 0.1, 1, 0.1]
    angles = torch.tensor([2.0, 0.2, 2.0, 0.2])
    torch.testing.assert_close(cos[0, 0], angles.cos())
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)
    expected = x.view(4) * angles.cos() + torch.tensor([-3.0, -4.0, 1.0, 2.0]) * angles.sin()
    torch.testing.assert_close(apply_rotary(x, (cos, sin)).view(4), expected)


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_tiny_flavour_of_every_preset_takes_an_adamw_step(name: str) -> None:
    torch.manual_seed(0)
    decoder = Decoder(DECODERS.get(name).tiny(), VOCAB)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=1e-2)
    ids = torch.randint(0, VOCAB, (2, 12))
    before = [parameter.clone() for parameter in decoder.parameters()]
    logits = decoder(decoder.embed(ids[:, :-1]))
    loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()) + decoder.aux_loss()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(a, b) for a, b in zip(before, decoder.parameters(), strict=True))


def test_moe_decoder_reports_aux_losses_with_gradient() -> None:
    decoder = decoder_of("gqa-moe").train()
    assert decoder.aux_losses() == {}  # nothing before a forward
    decoder(decoder.embed(torch.randint(0, VOCAB, (2, 8))))
    losses = decoder.aux_losses()
    assert set(losses) == {
        "moe_load_balance",
        "moe_router_z",
        "moe_dropped_frac",
        "moe_expert_share_min",
        "moe_expert_share_max",
    }
    assert losses["moe_load_balance"].requires_grad and losses["moe_router_z"].requires_grad
    assert not losses["moe_dropped_frac"].requires_grad
    expected = MOE.load_balance_coef * losses["moe_load_balance"] + MOE.router_z_coef * losses["moe_router_z"]
    torch.testing.assert_close(decoder.aux_loss(), expected)
    decoder.aux_loss().backward()
    assert decoder.blocks[0].mlp.router.weight.grad.abs().sum() > 0


def test_dense_decoder_has_no_aux_losses() -> None:
    decoder = decoder_of("gqa")
    decoder(decoder.embed(torch.randint(0, VOCAB, (1, 5))))
    assert decoder.aux_losses() == {}
    assert float(decoder.aux_loss()) == 0.0


def test_tied_and_untied_heads() -> None:
    tied = Decoder(GQA, VOCAB)
    untied = Decoder(LMPreset(width=32, depth=2, heads=4, tie_embeddings=False), VOCAB)
    assert tied.output is None and untied.output is not None
    x = torch.randn(1, 3, 32)
    torch.testing.assert_close(tied.head(x), x @ tied.token_embedding.weight.T)
    assert untied.non_embedding_params() == untied.preset.non_embedding_params()


def test_residual_projections_start_smaller() -> None:
    torch.manual_seed(0)
    decoder = Decoder(LMPreset(width=256, depth=8, heads=4), VOCAB)
    block = decoder.blocks[0]
    assert float(block.attention.query.weight.detach().std()) == pytest.approx(0.02, rel=0.05)
    assert float(block.attention.output.weight.detach().std()) == pytest.approx(0.02 / 4, rel=0.05)
    assert float(block.mlp.down.weight.detach().std()) == pytest.approx(0.02 / 4, rel=0.05)


def test_build_decoder_rejects_unknown_names_and_a_missing_checkpoint() -> None:
    with pytest.raises(UnknownNameError, match="lm-tiny"):
        build_decoder("gpt-9", VOCAB)
    with pytest.raises(ValueError, match="needs a checkpoint"):
        build_decoder(FROM_CHECKPOINT, VOCAB)
    assert build_decoder("lm-nano", VOCAB, moe=MOE).moe_layers()
