"""What an evaluation returns (``Evaluation``) and the loss both training stages are scored on (``target_loss``).

Shared by the pre-training evaluation (``mm1core.evaluate.harness``) and the assistant's
(``mm1core.evaluate.instruct``), so neither imports the other for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from mm1core.data.dataset import Sample, collate
from mm1core.model import MM1Model
from mm1core.module import next_token_loss


@dataclass
class Evaluation:
    metrics: dict[str, float]
    predictions: list[dict] = field(default_factory=list)  # rows: task, shots, item, prompt, prediction, references


@torch.inference_mode()
def target_loss(model: MM1Model, samples: Sequence[Sample], batch_size: int, pad_id: int) -> float:
    """Mean next-token loss per target (``loss_mask``) over ``samples``, ``batch_size`` at a time."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(samples), batch_size):
        batch = collate(samples[start : start + batch_size], pad_id)
        token_ids, loss_mask = batch["token_ids"].to(device), batch["loss_mask"].to(device)
        targets = int(loss_mask[:, 1:].sum())
        logits = model(token_ids, batch["images"].to(device))
        total += float(next_token_loss(logits, token_ids, loss_mask)) * targets
        count += targets
    return total / count
