"""Each registry entry's costs against the built module: parameters counted, and the activations autograd keeps for
backward (``activation_elements``) seen through ``saved_tensors_hooks``; FLOPs are checked against torch's counter in
``tests/mm1core/test_perf_path.py``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mm1core.connectors import CONNECTORS, build_connector
from mm1core.connectors.config import AttnPoolConfig, AvgPoolConfig, CAbstractorConfig, ConnectorBase

ENCODER_WIDTH, LM_WIDTH, VIEWS = 32, 48, 3
CONFIGS = [
    AvgPoolConfig(num_tokens=16),
    AvgPoolConfig(num_tokens=4),
    AttnPoolConfig(num_tokens=16),
    AttnPoolConfig(num_tokens=6, heads=2),
    CAbstractorConfig(num_tokens=16),
    CAbstractorConfig(num_tokens=4, depth=3),
    CAbstractorConfig(num_tokens=9, depth=1, hidden_width=16),
]
IDS = [f"{c.type}-" + "-".join(f"{k}{v}" for k, v in c.model_dump(exclude={"type", "freeze"}).items()) for c in CONFIGS]


def saved_elements(module: nn.Module, inputs: torch.Tensor) -> int:
    """Elements of the distinct tensors autograd saves for backward in ``module(inputs)``, parameters excluded."""
    parameters = {parameter.untyped_storage().data_ptr() for parameter in module.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes() // tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(inputs)
    return sum(saved.values())


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
@pytest.mark.parametrize("grid", [8, 12], ids=["grid8", "grid12"])
def test_activation_elements_are_what_autograd_keeps(config: ConnectorBase, grid: int) -> None:
    torch.manual_seed(0)
    module = build_connector(config, ENCODER_WIDTH, LM_WIDTH)
    patches = torch.randn(VIEWS, grid * grid, ENCODER_WIDTH, requires_grad=True)
    expected = VIEWS * CONNECTORS.get(config.type).activation_elements(config, ENCODER_WIDTH, LM_WIDTH, grid * grid)
    # attn-pool's projected queries are kept once per batch (k C), which the per-view count leaves out
    once = config.num_tokens * ENCODER_WIDTH if config.type == "attn-pool" else 0
    assert saved_elements(module, patches) == expected + once


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_params_count_the_built_module(config: ConnectorBase) -> None:
    module = build_connector(config, ENCODER_WIDTH, LM_WIDTH)
    counted = sum(parameter.numel() for parameter in module.parameters())
    assert CONNECTORS.get(config.type).params(config, ENCODER_WIDTH, LM_WIDTH) == counted
