"""Batched greedy decoding with a KV cache, for few-shot evaluation (MM1 Sec. 3.1: greedy, k-shot prompts).

Prompts of different lengths are LEFT-padded so every row's next token comes from the last column; the
padding mask hides the pads from attention and each row's position ids count its own tokens only, so a
prompt gets the same answer in a batch of 1 as in a batch of 16. ``complete`` is what a task calls: prompt
documents in, decoded answers out.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from mm1core.config import TrialConfig
from mm1core.data.dataset import Sample, encode_document
from mm1core.data.records import Document
from mm1core.data.tokenizer import TextTokenizer
from mm1core.model import MM1Model


def left_pad(samples: Sequence[Sample], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T_max)`` token ids padded on the left with ``pad_id``, and the ``(B, T_max)`` bool padding mask."""
    longest = max(len(sample["token_ids"]) for sample in samples)
    token_ids = torch.full((len(samples), longest), pad_id, dtype=torch.long)
    padding_mask = torch.zeros((len(samples), longest), dtype=torch.bool)
    for row, sample in enumerate(samples):
        length = len(sample["token_ids"])
        token_ids[row, longest - length :] = sample["token_ids"]
        padding_mask[row, longest - length :] = True
    return token_ids, padding_mask


def cut_at_stop(ids: list[int], stop_ids: Collection[int]) -> list[int]:
    """The ids before the first stop id."""
    for index, token in enumerate(ids):
        if token in stop_ids:
            return ids[:index]
    return ids


def pick(model: MM1Model, logits: torch.Tensor) -> torch.Tensor:
    """``(B, T, V)`` -> ``(B,)`` greedy next ids, among the ids the tokenizer knows (``model.vocab_size``)."""
    return logits[:, -1, : model.vocab_size].argmax(-1)


@torch.inference_mode()
def generate_batch(
    model: MM1Model, samples: Sequence[Sample], *, pad_id: int, stop_ids: Collection[int], max_new_tokens: int
) -> list[list[int]]:
    """Greedy continuations of one batch of prompts, each cut before its first stop token."""
    device = next(model.parameters()).device
    token_ids, padding_mask = (tensor.to(device) for tensor in left_pad(samples, pad_id))
    images = torch.cat([sample["images"] for sample in samples]).to(device)  # (N, 3, R, R)
    position_ids = (padding_mask.cumsum(1) - 1).clamp(min=0)  # (B, T): each row counts from its first token
    if int(position_ids[:, -1].max()) + max_new_tokens > model.decoder.preset.max_seq_len:
        raise ValueError(
            f"prompt + {max_new_tokens} new tokens exceed the decoder's {model.decoder.preset.max_seq_len}"
        )
    cache = model.decoder.new_cache()
    logits = model(token_ids, images, position_ids, padding_mask, cache)  # (B, T, V)
    next_ids, next_positions = pick(model, logits), position_ids[:, -1] + 1  # (B,), (B,)
    stops = torch.tensor(sorted(stop_ids), device=device)
    generated, finished = [next_ids], torch.isin(next_ids, stops)
    while len(generated) < max_new_tokens and not bool(finished.all()):
        embeddings = model.decoder.embed(next_ids[:, None])  # (B, 1, D)
        step_mask = torch.ones_like(next_ids, dtype=torch.bool)[:, None]  # (B, 1)
        logits = model.decoder(embeddings, next_positions[:, None], step_mask, cache)  # (B, 1, V)
        next_ids, next_positions = pick(model, logits), next_positions + 1
        generated.append(next_ids)
        finished |= torch.isin(next_ids, stops)
    rows = torch.stack(generated, dim=1).tolist()  # (B, new)
    return [cut_at_stop(row, stop_ids) for row in rows]


def greedy_generate(
    model: MM1Model,
    samples: Sequence[Sample],
    *,
    pad_id: int,
    stop_ids: Collection[int],
    max_new_tokens: int,
    batch_size: int,
) -> list[list[int]]:
    """Greedy continuations of every prompt (``Sample`` with ``end=False``), ``batch_size`` at a time."""
    answers: list[list[int]] = []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        answers += generate_batch(model, batch, pad_id=pad_id, stop_ids=stop_ids, max_new_tokens=max_new_tokens)
    return answers


def complete(model: MM1Model, cfg: TrialConfig, tokenizer: TextTokenizer, prompts: Sequence[Document]) -> list[str]:
    """The model's greedy answer to each prompt: decoded, the text before the first newline / ``<eos>`` (at most
    ``cfg.eval.max_new_tokens`` tokens), stripped. Prompts are encoded one batch at a time (images at
    ``cfg.model.image_resolution``), so only a batch's pixels are ever in memory."""
    num_tokens, resolution, batch_size = cfg.model.tokens_per_image, cfg.model.image_resolution, cfg.eval.batch_size
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = [
            encode_document(prompt, tokenizer, num_tokens, resolution, end=False)
            for prompt in prompts[start : start + batch_size]
        ]
        ids = generate_batch(
            model,
            batch,
            pad_id=tokenizer.pad_id,
            stop_ids={tokenizer.newline_id, tokenizer.eos_id},
            max_new_tokens=cfg.eval.max_new_tokens,
        )
        answers += [tokenizer.decode(answer).strip() for answer in ids]
    return answers
