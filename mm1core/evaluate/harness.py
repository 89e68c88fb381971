"""A trial's evaluation (MM1 Sec. 3.1): k-shot scores per task, their mean per k, TextCore, held-out LM loss.

Metric names are the MLflow contract of DESIGN.md: ``eval/<task>/<k>shot`` (percent: CIDEr for captioning,
VQAv2 accuracy for VQA tasks), ``eval/avg/<k>shot`` (the mean over tasks, MM1's meta-average),
``eval/textcore`` (multiple-choice accuracy on text-only sets) and ``eval/loss`` (caption-pair loss on held-out
items). The first few predictions of every task and k come back with the scores, for an MLflow table.

A fine-tuned model (``train.stage: sft``) is evaluated as an assistant instead (``mm1core.evaluate.instruct``):
``eval/sft/<task>`` (zero-shot through the chat template), ``eval/sft/avg`` and ``eval/sft/loss``; none of the
pre-training names above.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from mm1core.config import TrialConfig
from mm1core.data.dataset import Sample, encode_document
from mm1core.data.tokenizer import TextTokenizer
from mm1core.data.world import Split, caption_document, item_rng
from mm1core.evaluate.scores import Evaluation, target_loss
from mm1core.evaluate.tasks import build_tasks
from mm1core.evaluate.textcore import textcore_score
from mm1core.model import MM1Model
from mm1core.stages import STAGES


def heldout_samples(cfg: TrialConfig, tokenizer: TextTokenizer) -> list[Sample]:
    """Caption pairs (``<image> <web caption>``) of the eval split's items."""
    documents = [caption_document(item_rng(cfg.data.seed, Split.EVAL, i), 1) for i in range(cfg.eval.num_examples)]
    num_tokens, resolution = cfg.model.tokens_per_image, cfg.model.image_resolution
    return [encode_document(document, tokenizer, num_tokens, resolution) for document in documents]


@torch.inference_mode()
def heldout_loss(model: MM1Model, cfg: TrialConfig, tokenizer: TextTokenizer) -> float:
    """Mean next-token loss per text target over the held-out caption pairs."""
    return target_loss(model, heldout_samples(cfg, tokenizer), cfg.eval.batch_size, tokenizer.pad_id)


def evaluate(
    model: MM1Model,
    cfg: TrialConfig,
    tokenizer: TextTokenizer,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> Evaluation:
    """The stage's evaluation (``mm1core.stages``), on the model's device: for ``pretrain`` every task of
    ``cfg.eval.tasks`` at every ``cfg.eval.shots``, ``eval/avg/<k>shot``, ``eval/textcore`` and ``eval/loss``; a
    fine-tuned model (``sft``) is scored zero-shot through the chat template instead: ``eval/sft/<task>``,
    ``eval/sft/avg`` and ``eval/sft/loss`` (``mm1core.evaluate.instruct``). ``autocast`` wraps the forward passes
    (a trial passes its precision plugin's ``forward_context``)."""
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast():
        result = STAGES.get(cfg.train.stage).load("evaluate")(model, cfg, tokenizer)
    model.train(was_training)
    return result


def pretraining_evaluation(model: MM1Model, cfg: TrialConfig, tokenizer: TextTokenizer) -> Evaluation:
    """``evaluate`` of a pre-trained model: k-shot scores, their means, TextCore and the held-out caption loss."""
    result = Evaluation({})
    tasks = build_tasks(cfg)
    for shots in cfg.eval.shots:
        scores = {}
        for task in tasks:
            outcome = task.score(model, cfg, tokenizer, shots)
            scores[task.name] = outcome.score
            result.predictions += outcome.predictions
        result.metrics.update({f"eval/{name}/{shots}shot": value for name, value in scores.items()})
        if scores:
            result.metrics[f"eval/avg/{shots}shot"] = sum(scores.values()) / len(scores)
    if cfg.eval.textcore:
        outcome = textcore_score(model, cfg, tokenizer)
        result.metrics["eval/textcore"] = outcome.score
        result.predictions += outcome.predictions
    result.metrics["eval/loss"] = heldout_loss(model, cfg, tokenizer)
    return result


def pretraining_loss(model: MM1Model, cfg: TrialConfig, tokenizer: TextTokenizer) -> dict[str, float]:
    """``evaluate_loss`` of a pre-trained model: ``eval/loss``, the held-out caption loss."""
    return {"eval/loss": heldout_loss(model, cfg, tokenizer)}


def evaluate_loss(
    model: MM1Model,
    cfg: TrialConfig,
    tokenizer: TextTokenizer,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> Evaluation:
    """``eval/loss`` alone (``eval.periodic: loss``): one forward pass per eval batch, no generation; for
    ``train.stage: sft``, ``eval/sft/loss`` alone."""
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast():
        result = Evaluation(STAGES.get(cfg.train.stage).load("evaluate_loss")(model, cfg, tokenizer))
    model.train(was_training)
    return result
