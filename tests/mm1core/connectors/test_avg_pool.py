"""The avg-pool connector: one output shape per producible token count, agreeing with the registry's check."""

from __future__ import annotations

import pytest
import torch

from mm1core.connectors import CONNECTORS
from mm1core.connectors.avg_pool import AvgPoolConnector
from mm1core.connectors.config import AvgPoolConfig

GRID = 8
VALID = [n for n in range(1, GRID * GRID + 1) if not AvgPoolConfig(num_tokens=n).problems(64, GRID)]


def test_the_registry_names_the_class() -> None:
    assert CONNECTORS.get("avg-pool").load() is AvgPoolConnector


@pytest.mark.parametrize("num_tokens", VALID, ids=[f"{n}tokens" for n in VALID])
def test_output_shape(num_tokens: int) -> None:
    connector = AvgPoolConnector(encoder_width=64, lm_width=128, num_tokens=num_tokens)
    assert connector(torch.randn(3, GRID * GRID, 64)).shape == (3, num_tokens, 128)


def test_pooling_averages_patch_blocks() -> None:
    connector = AvgPoolConnector(encoder_width=2, lm_width=2, num_tokens=4)
    patches = torch.arange(16.0).reshape(1, 4, 4).repeat(2, 1, 1).permute(1, 2, 0).reshape(1, 16, 2)  # (1, g*g, C)
    captured = {}
    connector.projection.register_forward_pre_hook(lambda module, inputs: captured.update(pooled=inputs[0]))
    connector(patches)
    torch.testing.assert_close(captured["pooled"][0, :, 0], torch.tensor([2.5, 4.5, 10.5, 12.5]))


@pytest.mark.parametrize("num_tokens", [2, 12])
def test_rejects_non_square_counts(num_tokens: int) -> None:
    with pytest.raises(ValueError, match="square"):
        AvgPoolConnector(64, 128, num_tokens)


def test_rejects_more_tokens_than_patches() -> None:
    with pytest.raises(ValueError, match="cannot pool"):
        AvgPoolConnector(64, 128, 25)(torch.randn(1, 16, 64))
