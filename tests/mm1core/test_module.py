"""The LightningModule's pieces: the masked loss, parameter groups, the learning-rate schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mm1core.config import TrialConfig
from mm1core.model import MM1Model
from mm1core.module import LR_FLOOR, MM1Module, next_token_loss, parameter_groups, warmup_cosine


def test_loss_ignores_positions_outside_the_mask() -> None:
    torch.manual_seed(0)
    logits, token_ids = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    loss_mask = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]], dtype=torch.bool)
    changed = logits.clone()
    changed[0, 2:] += 100.0  # predicts targets 3, 4 of row 0: not in the mask
    torch.testing.assert_close(
        next_token_loss(logits, token_ids, loss_mask), next_token_loss(changed, token_ids, loss_mask)
    )
    expected = nn.functional.cross_entropy(logits[:, :-1][loss_mask[:, 1:]], token_ids[:, 1:][loss_mask[:, 1:]])
    torch.testing.assert_close(next_token_loss(logits, token_ids, loss_mask), expected)


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(100, 10, 100) == pytest.approx(LR_FLOOR)
    values = [warmup_cosine(step, 10, 100) for step in range(10, 101)]
    assert all(later <= earlier for earlier, later in zip(values, values[1:], strict=False))
    assert warmup_cosine(0, 0, 5) == pytest.approx(1.0)


def test_weight_decay_only_on_weight_matrices(tiny_model: MM1Model) -> None:
    groups = parameter_groups(tiny_model, lr=1e-3, weight_decay=1e-4)
    decayed = {id(p) for group in groups if group["weight_decay"] > 0 for p in group["params"]}
    for name, parameter in tiny_model.named_parameters():
        is_table = "token_embedding" in name or "position_embedding" in name
        is_matrix = parameter.ndim >= 2 and not is_table  # linear and conv (patch embedding) weights
        assert (id(parameter) in decayed) == is_matrix, name
    assert sum(len(group["params"]) for group in groups) == len(list(tiny_model.parameters()))


def test_decay_is_decoupled_and_vision_learns_slower(tiny_model: MM1Model) -> None:
    groups = parameter_groups(tiny_model, lr=2e-3, weight_decay=2e-4, vision_lr_scale=0.3)
    for group in groups:
        assert group["lr"] in (pytest.approx(2e-3), pytest.approx(2e-3 * 0.3))
        if group["weight_decay"]:
            assert group["lr"] * group["weight_decay"] == pytest.approx(2e-4)  # shrink per step = weight decay
    vision = {id(p) for p in [*tiny_model.encoder.parameters(), *tiny_model.connector.parameters()]}
    for group in groups:
        assert all((id(p) in vision) == (group["lr"] < 2e-3) for p in group["params"])


def test_optimizer_and_schedule(tiny_model: MM1Model, tiny_config: TrialConfig) -> None:
    configured = MM1Module(tiny_model, tiny_config.train).configure_optimizers()
    assert isinstance(configured["optimizer"], torch.optim.AdamW)
    assert configured["lr_scheduler"]["interval"] == "step"
