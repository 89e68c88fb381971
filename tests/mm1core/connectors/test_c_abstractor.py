"""The C-Abstractor (Honeybee, Cha et al., 2024): its blocks, widths, depth, and what it refuses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mm1core.connectors import CONNECTORS
from mm1core.connectors.c_abstractor import Bottleneck, CAbstractor, LayerNorm2d
from mm1core.connectors.sizes import C_ABSTRACTOR_DEPTH, c_abstractor_params


def test_the_registry_names_the_class() -> None:
    assert CONNECTORS.get("c-abstractor").load() is CAbstractor


def test_layer_norm_2d_normalises_each_cell_over_channels() -> None:
    norm, x = LayerNorm2d(6), torch.randn(2, 6, 3, 5)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (6,)).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)


@pytest.mark.parametrize(("in_width", "width"), [(8, 8), (8, 12)], ids=["same-width", "widening"])
def test_bottleneck_keeps_the_map_size(in_width: int, width: int) -> None:
    assert Bottleneck(in_width, width)(torch.randn(2, in_width, 5, 5)).shape == (2, width, 5, 5)


def test_default_depth_is_two_blocks_per_stage() -> None:
    connector = CAbstractor(16, 24, 4)
    assert C_ABSTRACTOR_DEPTH == 2
    assert len(connector.local_mixing) == len(connector.pooled_mixing) == C_ABSTRACTOR_DEPTH


@pytest.mark.parametrize(
    ("depth", "hidden_width"), [(1, None), (3, None), (1, 32), (2, 8)], ids=["d1", "d3-honeybee", "d1-h32", "d2-h8"]
)
def test_params_closed_form_for_other_depths_and_widths(depth: int, hidden_width: int | None) -> None:
    connector = CAbstractor(16, 24, 4, depth=depth, hidden_width=hidden_width)
    assert connector(torch.randn(2, 64, 16)).shape == (2, 4, 24)
    counted = sum(p.numel() for p in connector.parameters())
    assert c_abstractor_params(16, 24, 4, depth=depth, hidden_width=hidden_width) == counted


def test_a_change_to_one_patch_reaches_its_cell_most() -> None:
    """The 3x3 convs mix neighbours: perturbing the top-left patch moves the top-left token the most."""
    torch.manual_seed(0)
    connector, inputs = CAbstractor(16, 24, 16).eval(), torch.randn(1, 64, 16)  # 8x8 grid -> 4x4 tokens
    changed = inputs.clone()
    changed[0, 0] += 3.0
    with torch.no_grad():
        moved = (connector(changed) - connector(inputs)).norm(dim=-1)[0]  # (16,)
    assert moved.argmax() == 0


@pytest.mark.parametrize("num_patches", [15, 48], ids=["15patches", "48patches"])
def test_patches_must_form_a_square_grid(num_patches: int) -> None:
    with pytest.raises(ValueError, match="do not form a square grid"):
        CAbstractor(16, 24, 4)(torch.randn(1, num_patches, 16))


@pytest.mark.parametrize("depth", [0, -1])
def test_a_stage_needs_a_block(depth: int) -> None:
    with pytest.raises(ValueError, match="at least one block"):
        CAbstractor(16, 24, 4, depth=depth)
