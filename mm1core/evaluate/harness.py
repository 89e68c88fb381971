"""A trial's evaluation (MM1 Sec. 3.1): k-shot scores per task, their mean per k, and held-out LM loss.

Metric names are the MLflow contract of DESIGN.md: ``eval/<task>/<k>shot`` (percent), ``eval/avg/<k>shot``
(the mean over tasks, MM1's meta-average) and ``eval/loss`` (caption-pair loss on held-out items).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from mm1core.config import TrialConfig
from mm1core.data.dataset import Sample, collate, encode_document
from mm1core.data.tokenizer import Tokenizer
from mm1core.data.world import Split, caption_document, item_rng
from mm1core.evaluate.captioning import caption_score
from mm1core.model import MM1Model
from mm1core.module import next_token_loss

# task name -> score(model, cfg, tokenizer, shots) in percent; the avg is taken over these
TASKS: dict[str, Callable[[MM1Model, TrialConfig, Tokenizer, int], float]] = {"caption": caption_score}


def heldout_samples(cfg: TrialConfig, tokenizer: Tokenizer) -> list[Sample]:
    """Caption pairs (``<image> <web caption>``) of the eval split's items."""
    documents = [caption_document(item_rng(cfg.data.seed, Split.EVAL, i), 1) for i in range(cfg.eval.num_examples)]
    num_tokens, resolution = cfg.model.tokens_per_image, cfg.model.image_resolution
    return [encode_document(document, tokenizer, num_tokens, resolution) for document in documents]


@torch.inference_mode()
def heldout_loss(model: MM1Model, cfg: TrialConfig, tokenizer: Tokenizer) -> float:
    """Mean next-token loss per text target over the held-out caption pairs."""
    device = next(model.parameters()).device
    samples = heldout_samples(cfg, tokenizer)
    total, count = 0.0, 0
    for start in range(0, len(samples), cfg.eval.batch_size):
        batch = collate(samples[start : start + cfg.eval.batch_size], tokenizer.pad_id)
        token_ids, loss_mask = batch["token_ids"].to(device), batch["loss_mask"].to(device)
        targets = int(loss_mask[:, 1:].sum())
        logits = model(token_ids, batch["images"].to(device))
        total += float(next_token_loss(logits, token_ids, loss_mask)) * targets
        count += targets
    return total / count


def evaluate(
    model: MM1Model,
    cfg: TrialConfig,
    tokenizer: Tokenizer,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> dict[str, float]:
    """Every task at every ``cfg.eval.shots``, ``eval/avg/<k>shot`` and ``eval/loss``, on the model's device.

    ``autocast`` wraps the forward passes (a trial passes its precision plugin's ``forward_context``).
    """
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    with torch.inference_mode(), autocast():
        for shots in cfg.eval.shots:
            scores = {task: score(model, cfg, tokenizer, shots) for task, score in TASKS.items()}
            metrics.update({f"eval/{task}/{shots}shot": value for task, value in scores.items()})
            metrics[f"eval/avg/{shots}shot"] = sum(scores.values()) / len(scores)
        metrics["eval/loss"] = heldout_loss(model, cfg, tokenizer)
    model.train(was_training)
    return metrics
