"""Batched greedy decoding: the same answers at any batch size, and equal to decoding without a cache."""

from __future__ import annotations

import torch

from mm1core.data.dataset import encode_document
from mm1core.data.tokenizer import Tokenizer
from mm1core.evaluate.captioning import caption_prompt
from mm1core.evaluate.generate import cut_at_stop, generate_batch, greedy_generate, left_pad
from mm1core.model import MM1Model


def prompts(tokenizer: Tokenizer, count: int = 16) -> list:
    documents = [caption_prompt(0, index, shots=index % 3)[0] for index in range(count)]  # lengths differ
    return [encode_document(document, tokenizer, 4, 32, end=False) for document in documents]


def test_batch_of_one_and_of_sixteen_agree(tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    samples = prompts(tokenizer)
    options = {"pad_id": tokenizer.pad_id, "stop_ids": {tokenizer.newline_id}, "max_new_tokens": 8}
    alone = greedy_generate(tiny_model, samples, batch_size=1, **options)
    together = greedy_generate(tiny_model, samples, batch_size=16, **options)
    assert alone == together
    assert any(alone)


def test_left_padded_logits_match_unpadded(tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    samples = prompts(tokenizer, 4)
    token_ids, padding_mask = left_pad(samples, tokenizer.pad_id)
    positions = (padding_mask.cumsum(1) - 1).clamp(min=0)
    images = torch.cat([sample["images"] for sample in samples])
    with torch.no_grad():
        batched = tiny_model(token_ids, images, positions, padding_mask)[:, -1]
        for row, sample in enumerate(samples):
            single = tiny_model(sample["token_ids"][None], sample["images"])[:, -1]
            torch.testing.assert_close(batched[row : row + 1], single, atol=1e-4, rtol=1e-4)


def test_cached_decoding_equals_full_recompute(tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    sample = prompts(tokenizer, 2)[1]
    [cached] = generate_batch(tiny_model, [sample], pad_id=tokenizer.pad_id, stop_ids=set(), max_new_tokens=6)
    token_ids, recomputed = sample["token_ids"][None], []
    with torch.no_grad():
        for _ in range(6):
            next_id = tiny_model(token_ids, sample["images"])[0, -1].argmax()
            recomputed.append(int(next_id))
            token_ids = torch.cat([token_ids, next_id.view(1, 1)], dim=1)
    assert cached == recomputed


def test_answers_stop_before_the_stop_token() -> None:
    assert cut_at_stop([5, 6, 1, 7], {1, 2}) == [5, 6]
    assert cut_at_stop([5, 6], {1}) == [5, 6]
