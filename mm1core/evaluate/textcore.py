"""TextCore (MM1 Sec. 3.1, Appendix): text-only multiple-choice accuracy, by log-likelihood.

Each choice is scored by the sum of the log-probabilities of its tokens given the context (the model reads the
text alone, no image; no length normalisation); the model picks the highest (the first, on a tie). A choice's
tokens are those the tokenizer makes of ``context + " " + choice`` past the context's own (as the
lm-evaluation-harness splits them), so a BPE tokenizer scores the choice as it would read it in running text.

Sets (``eval.textcore``): ``world``, the embedded world's cloze items (``text_eval_item`` of
``Split.TEXT_EVAL``, the first ``eval.num_examples``), and jsonl files of lines ``{"context": str, "choices":
[str, ...], "answer": int}`` (``choices[answer]`` is right): ``eval.num_examples`` lines drawn with the data seed
(all when fewer), in file order; malformed lines are skipped and counted in the log. ``eval/textcore`` is the
mean of the sets' accuracies, in percent. Sequences are right-padded: a causal decoder never lets a token see
the pads after it, so no padding mask is needed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mm1core.config import TrialConfig
from mm1core.data.tokenizer import TextTokenizer
from mm1core.data.world import Split, TextItem, text_eval_item
from mm1core.evaluate.tasks import LOGGER, TaskResult, prediction_row
from mm1core.model import MM1Model

WORLD = "world"  # the embedded set's name in eval.textcore


# --------------------------------------------------------------------------------------------------- sets
def parse_item(line: str) -> TextItem | None:
    """A jsonl line as an item, or ``None`` when it is not ``{"context": str, "choices": [str, ...], "answer":
    int}`` with at least two choices and ``answer`` one of their indices."""
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    context, choices, answer = record.get("context"), record.get("choices"), record.get("answer")
    if not isinstance(context, str) or not isinstance(choices, list) or len(choices) < 2:
        return None
    if not all(isinstance(choice, str) for choice in choices):
        return None
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        return None
    return TextItem(context, tuple(choices), answer, "file")


def read_text_set(path: str, count: int, seed: int) -> list[TextItem]:
    """``count`` items of a jsonl file drawn with ``seed`` (all when fewer), in file order."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    items = [item for item in map(parse_item, lines) if item is not None]
    if len(items) < len(lines):
        skipped = len(lines) - len(items)
        LOGGER.warning("textcore: %d of %d lines of %s are malformed, skipped", skipped, len(lines), path)
    if not items:
        raise ValueError(f"textcore: {path} has no valid line (context, choices, answer)")
    if len(items) <= count:
        return items
    chosen = np.random.default_rng([seed, int(Split.TEXT_EVAL)]).permutation(len(items))[:count]
    return [items[index] for index in sorted(chosen.tolist())]


def text_sets(cfg: TrialConfig) -> list[tuple[str, list[TextItem]]]:
    """``(name, items)`` per entry of ``cfg.eval.textcore``: ``world`` or the file's stem."""
    sets = []
    for entry in cfg.eval.textcore:
        if entry == WORLD:
            sets.append((WORLD, [text_eval_item(cfg.data.seed, index) for index in range(cfg.eval.num_examples)]))
        else:
            sets.append((Path(entry).stem, read_text_set(entry, cfg.eval.num_examples, cfg.data.seed)))
    return sets


# ------------------------------------------------------------------------------------------------ scoring
def choice_ids(tokenizer: TextTokenizer, context: str, choice: str) -> tuple[list[int], list[int]]:
    """The context's ids and the choice's as they follow it: the ids of the whole text past the context's (the
    choice alone, with its leading space, where the whole text's ids do not start with the context's)."""
    continuation = choice if not context or context[-1].isspace() or choice[:1].isspace() else " " + choice
    context_ids, whole = tokenizer.encode(context), tokenizer.encode(context + continuation)
    if whole[: len(context_ids)] == context_ids:
        return context_ids, whole[len(context_ids) :]
    return context_ids, tokenizer.encode(continuation)


def choice_sequences(item: TextItem, tokenizer: TextTokenizer, max_len: int) -> list[tuple[list[int], int]]:
    """Per choice: ``<bos>`` + context + choice ids (the context cut from the left to fit ``max_len``) and how
    many of the last ids are the choice's."""
    sequences = []
    for choice in item.choices:
        context, continuation = choice_ids(tokenizer, item.context, choice)
        ids = (context + continuation)[-(max_len - 1) :]
        sequences.append(([tokenizer.bos_id, *ids], min(len(continuation), len(ids))))
    return sequences


@torch.inference_mode()
def sequence_logprobs(
    model: MM1Model, sequences: Sequence[tuple[list[int], int]], pad_id: int, batch_size: int
) -> list[float]:
    """Per sequence, the summed log-probability of its last ``count`` ids, each given the ids before it."""
    device = next(model.parameters()).device
    no_images = torch.zeros(0, 3, 1, 1, device=device)  # text only: the model skips its encoder
    totals: list[float] = []
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start : start + batch_size]
        token_ids = torch.full((len(batch), max(len(ids) for ids, _ in batch)), pad_id, dtype=torch.long)
        for row, (ids, _) in enumerate(batch):
            token_ids[row, : len(ids)] = torch.tensor(ids)  # right padding
        token_ids = token_ids.to(device)
        logits = model(token_ids, no_images)[..., : model.vocab_size].float()  # (B, T, V)
        logprobs = logits.log_softmax(-1)[:, :-1].gather(-1, token_ids[:, 1:, None])[..., 0]  # (B, T - 1)
        for row, (ids, count) in enumerate(batch):
            totals.append(float(logprobs[row, len(ids) - 1 - count : len(ids) - 1].sum()))
    return totals


def pick_choices(model: MM1Model, cfg: TrialConfig, tokenizer: TextTokenizer, items: Sequence[TextItem]) -> list[int]:
    """The index of the most likely choice of every item."""
    max_len = model.decoder.preset.max_seq_len
    sequences = [sequence for item in items for sequence in choice_sequences(item, tokenizer, max_len)]
    scores = sequence_logprobs(model, sequences, tokenizer.pad_id, cfg.eval.batch_size)
    picks, start = [], 0
    for item in items:
        item_scores = scores[start : start + len(item.choices)]
        picks.append(max(range(len(item_scores)), key=item_scores.__getitem__))
        start += len(item.choices)
    return picks


def textcore_score(model: MM1Model, cfg: TrialConfig, tokenizer: TextTokenizer) -> TaskResult:
    """Accuracy per set of ``cfg.eval.textcore`` (logged) and their mean, in percent; prediction rows per set
    (task ``textcore/<set>``)."""
    accuracies, rows = [], []
    for name, items in text_sets(cfg):
        picks = pick_choices(model, cfg, tokenizer, items)
        accuracy = 100.0 * sum(pick == item.answer for pick, item in zip(picks, items, strict=True)) / len(items)
        LOGGER.info("textcore/%s: %.2f%% of %d items", name, accuracy, len(items))
        accuracies.append(accuracy)
        shown = zip(range(cfg.eval.predictions), items, picks, strict=False)
        rows += [
            prediction_row(f"textcore/{name}", 0, index, item.context, item.choices[pick], [item.choices[item.answer]])
            for index, item, pick in shown
        ]
    return TaskResult(sum(accuracies) / len(accuracies), rows)
