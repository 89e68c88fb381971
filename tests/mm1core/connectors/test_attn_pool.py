"""The attention-pooling connector: any count up to the number of patches, heads, and what it refuses."""

from __future__ import annotations

import pytest
import torch

from mm1core.connectors import CONNECTORS
from mm1core.connectors.attn_pool import AttentionPoolConnector
from mm1core.connectors.config import AttnPoolConfig


def test_the_registry_names_the_class() -> None:
    assert CONNECTORS.get("attn-pool").load() is AttentionPoolConnector


@pytest.mark.parametrize("num_patches", [5, 16, 49], ids=lambda n: f"{n}patches")
def test_patches_need_not_form_a_square_grid_and_every_count_up_to_them_works(num_patches: int) -> None:
    for num_tokens in (1, 2, 3, num_patches):
        connector = AttentionPoolConnector(16, 24, num_tokens)
        assert connector(torch.randn(2, num_patches, 16)).shape == (2, num_tokens, 24)


def test_more_tokens_than_patches_is_refused() -> None:
    with pytest.raises(ValueError, match="more tokens than patches"):
        AttentionPoolConnector(16, 24, 17)(torch.randn(1, 16, 16))


@pytest.mark.parametrize("num_tokens", [0, -1])
def test_no_tokens_is_refused(num_tokens: int) -> None:
    with pytest.raises(ValueError, match="at least one token"):
        AttentionPoolConnector(16, 24, num_tokens)


def test_heads_must_divide_the_encoder_width() -> None:
    with pytest.raises(ValueError, match="does not split into 3 heads"):
        AttentionPoolConnector(16, 24, 4, heads=3)


@pytest.mark.parametrize("heads", [1, 2, 8])
def test_head_count_changes_the_output_not_the_parameter_count(heads: int) -> None:
    torch.manual_seed(0)
    connector = AttentionPoolConnector(16, 24, 4, heads=heads)
    config = AttnPoolConfig(num_tokens=4, heads=heads)
    assert sum(p.numel() for p in connector.parameters()) == CONNECTORS.get("attn-pool").params(config, 16, 24)
    assert connector(torch.randn(2, 16, 16)).shape == (2, 4, 24)


def test_each_query_gives_its_own_token() -> None:
    torch.manual_seed(0)
    tokens = AttentionPoolConnector(16, 24, 6)(torch.randn(1, 16, 16))[0]  # (6, D)
    assert torch.cdist(tokens, tokens).add(torch.eye(6)).min() > 1e-3  # no two tokens coincide
