"""The LightningModule of one trial: next-token loss on text targets, AdamW, warmup + cosine schedule.

Optimisation after MM1 Sec. 3.4: AdamW (betas 0.9/0.95, common LLM practice), linear warmup, cosine decay to
10% of the peak learning rate, weight decay ``0.1 * lr`` by default. We read that rule as *decoupled* decay:
each step shrinks the decayed weights by ``weight_decay * schedule(step)`` (PyTorch's coupled form would shrink
them by ``0.1 * lr**2``, i.e. not at all), so PyTorch's AdamW, which multiplies its coefficient by the current
rate, is given ``weight_decay / lr``. Decay applies to the matrices of linear and convolution layers only;
biases, LayerNorms and embedding tables (token, position, the tied head) are not decayed. The encoder and
connector learn at ``train.vision_lr_scale`` times the LM's rate (see there); ``train/lr`` reports the LM's rate.

A MoE decoder's auxiliary losses (GShard load balancing, ST-MoE router z-loss) are added to the training loss
with the coefficients of ``model.decoder.moe``.

Under data parallelism (DDP over W ranks) each rank's next-token loss is a mean over its own targets and DDP averages
gradients over ranks; ``data_parallel_loss`` weights each rank by its share of the global batch's targets, so a step
is the single-process step on the whole batch and the logged loss its mean.

Metrics never go to a Lightning logger: ``mm1core.train`` reads the returned losses and feeds its sink.
"""

from __future__ import annotations

import math
from typing import Any

import lightning
import torch
import torch.nn.functional as F
from torch import nn

from mm1core.config import TrainConfig
from mm1core.data.dataset import Batch
from mm1core.model import MM1Model

LR_FLOOR = 0.1  # cosine decay ends at 10% of the peak learning rate (MM1 Sec. 3.4)
BETAS = (0.9, 0.95)


def next_token_loss(logits: torch.Tensor, token_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token ``t + 1`` from position ``t``, over targets in ``loss_mask``.

    ``logits`` (B, T, V), ``token_ids`` and ``loss_mask`` (B, T). No boolean indexing, so no device sync.
    """
    targets = token_ids[:, 1:].masked_fill(~loss_mask[:, 1:], -100)  # (B, T - 1)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


def decay_split(modules: tuple[nn.Module, ...]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Trainable parameters of ``modules``: (linear/conv weight matrices, everything else)."""
    matrices = {
        id(child.weight): child.weight
        for module in modules
        for child in module.modules()
        if isinstance(child, (nn.Linear, nn.Conv2d)) and child.weight.requires_grad
    }
    others = [p for module in modules for p in module.parameters() if p.requires_grad and id(p) not in matrices]
    return list(matrices.values()), others


def parameter_groups(
    model: MM1Model, lr: float, weight_decay: float, vision_lr_scale: float = 1.0
) -> list[dict[str, Any]]:
    """AdamW groups: the decoder at ``lr``, the encoder and connector at ``vision_lr_scale * lr``; in each,
    weight matrices decayed by ``weight_decay`` per step (decoupled: torch's coefficient is ``wd / lr``)."""
    groups = []
    for modules, scale in (((model.decoder,), 1.0), ((model.encoder, model.connector), vision_lr_scale)):
        matrices, others = decay_split(modules)
        group_lr = lr * scale
        groups.append({"params": matrices, "lr": group_lr, "weight_decay": weight_decay / group_lr})
        groups.append({"params": others, "lr": group_lr, "weight_decay": 0.0})
    return [group for group in groups if group["params"]]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, floor: float = LR_FLOOR) -> float:
    """Learning-rate multiplier of optimizer step ``step`` (0-based): linear warmup, then cosine to ``floor``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def data_parallel_loss(lm_loss: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(what to optimise, the loss of the whole batch)`` for this rank's mean next-token loss ``lm_loss`` over the
    targets of ``loss_mask`` (B, T).

    In one process both are ``lm_loss``. Across W ranks (an initialised process group), rank r with ``n_r`` of the
    batch's ``N`` targets optimises ``lm_loss * W * n_r / N``: DDP's gradient average is then the gradient of the mean
    over all N targets, as one process computes it, even when the ranks' rows hold different numbers of targets
    (a plain average of rank means would weight a short caption row like a long document). One all-reduce of two
    numbers a step.
    """
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return lm_loss, lm_loss.detach()
    world = torch.distributed.get_world_size()
    if world == 1:
        return lm_loss, lm_loss.detach()
    targets = loss_mask[:, 1:].sum().to(lm_loss.dtype)
    totals = torch.stack([targets, lm_loss.detach() * targets])  # (2,): targets, summed loss
    torch.distributed.all_reduce(totals)  # over ranks
    return lm_loss * (targets * world / totals[0]), totals[1] / totals[0]


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite (a diverged trial). On a CPU it is raised before that step's
    optimizer update; on an accelerator, where a per-step check would cost a device sync every step,
    ``mm1core.train.SinkCallback`` raises it when it delivers the burst holding the step (the steps before it are
    delivered, the bad one never is)."""

    @classmethod
    def at(cls, value: float, step: int) -> NonFiniteLoss:
        return cls(f"train/loss is {value} at step {step}: the trial diverged")


class MM1Module(lightning.LightningModule):
    """Trains ``model`` with the ``train`` section of a trial config."""

    def __init__(self, model: MM1Model, train: TrainConfig) -> None:
        super().__init__()
        self.model, self.train_config = model, train

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(batch["token_ids"], batch["images"])

    def training_step(self, batch: Batch, batch_index: int) -> dict[str, torch.Tensor]:
        """``loss`` is what is optimised: the next-token loss plus, for a MoE decoder, its weighted auxiliary
        losses; ``lm_loss`` (the whole batch's, over every data-parallel rank) and the MoE values
        (``moe_load_balance``, ``moe_router_z``, utilisation; this rank's) are returned detached for logging."""
        objective, lm_loss = data_parallel_loss(
            next_token_loss(self(batch), batch["token_ids"], batch["loss_mask"]), batch["loss_mask"]
        )
        auxiliary = self.model.decoder.aux_losses()
        loss = objective + self.model.decoder.aux_loss() if auxiliary else objective
        check = loss.detach() + lm_loss  # lm_loss is the whole batch's: non-finite on every rank if it is on any
        if check.device.type == "cpu" and not torch.isfinite(check):  # stop before the update, never train on it
            raise NonFiniteLoss.at(check.item(), self.global_step + 1)
        return {
            "loss": loss,
            "lm_loss": lm_loss,
            **{name: value.detach() for name, value in auxiliary.items()},
        }

    def configure_optimizers(self) -> dict[str, object]:
        config = self.train_config
        groups = parameter_groups(self.model, config.peak_lr, config.resolved_weight_decay, config.vision_lr_scale)
        optimizer = torch.optim.AdamW(groups, lr=config.peak_lr, betas=BETAS)
        warmup = int(config.warmup_ratio * config.max_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, config.max_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
