"""Vision-language connectors (MM1 Sec. 3.2, Fig. 4). Importing this package does not import torch.

Each entry carries what the rest of the project needs to know about a family without building it: its config class
(``mm1core.connectors.config``: the fields a YAML may set, their defaults and checks), the class that builds it
(imported on demand), its parameter count, forward FLOPs and the activations it keeps for backward
(``mm1core.connectors.costs``), so a sweep is checked, sized and costed before any trial starts.
``build_connector(config, encoder_width, lm_width)`` builds the module a config describes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mm1core.connectors import costs
from mm1core.connectors.config import (
    AttnPoolConfig,
    AvgPoolConfig,
    CAbstractorConfig,
    ConnectorBase,
    ConnectorConfig,
)
from mm1core.connectors.sizes import patch_count_problem, square_grid_problem
from mm1core.registry import Registry

if TYPE_CHECKING:
    from mm1core.connectors.base import Connector


@dataclass(frozen=True)
class ConnectorEntry:
    """One connector family.

    ``config`` is its config class; ``builder`` is ``"module:Class"``, called as ``Class(encoder_width, lm_width,
    num_tokens, **config.module_kwargs())``; ``description`` is one line for ``mm1 registry``. With C the encoder
    width, D the LM width and P the patches of one view: ``params(config, C, D)`` is the built module's parameter
    count, ``forward_flops(config, C, D, P)`` the matmul FLOPs of one view's forward pass and
    ``activation_elements(config, C, D, P)`` the tensor elements it keeps for backward per view (formulas in
    ``mm1core.connectors.costs``).
    """

    config: type[ConnectorBase]
    builder: str
    description: str
    params: Callable[[Any, int, int], int]
    forward_flops: Callable[[Any, int, int, int], float]
    activation_elements: Callable[[Any, int, int, int], int]

    def load(self) -> type:
        module, name = self.builder.split(":")
        return getattr(importlib.import_module(module), name)


CONNECTORS: Registry[ConnectorEntry] = Registry("connector")
CONNECTORS.register(
    "avg-pool",
    ConnectorEntry(
        AvgPoolConfig,
        "mm1core.connectors.avg_pool:AvgPoolConnector",
        "n x n average pooling of the patch grid, then an MLP (MM1 Fig. 4)",
        costs.avg_pool_params,
        costs.avg_pool_forward_flops,
        costs.avg_pool_activation_elements,
    ),
)
CONNECTORS.register(
    "attn-pool",
    ConnectorEntry(
        AttnPoolConfig,
        "mm1core.connectors.attn_pool:AttentionPoolConnector",
        "k learnable queries cross-attend to the patches, then an MLP (MM1 Fig. 4)",
        costs.attention_pool_params,
        costs.attention_pool_forward_flops,
        costs.attention_pool_activation_elements,
    ),
)
CONNECTORS.register(
    "c-abstractor",
    ConnectorEntry(
        CAbstractorConfig,
        "mm1core.connectors.c_abstractor:CAbstractor",
        "residual conv blocks, n x n average pooling, conv blocks, MLP (Honeybee C-Abstractor)",
        costs.c_abstractor_parameter_count,
        costs.c_abstractor_forward_flops,
        costs.c_abstractor_activation_elements,
    ),
)


def build_connector(config: ConnectorBase, encoder_width: int, lm_width: int) -> Connector:
    """The module ``config`` describes, between an encoder of ``encoder_width`` and an LM of ``lm_width``."""
    connector_class = CONNECTORS.get(config.type).load()
    return connector_class(encoder_width, lm_width, config.num_tokens, **config.module_kwargs())


__all__ = [
    "CONNECTORS",
    "ConnectorConfig",
    "ConnectorEntry",
    "build_connector",
    "patch_count_problem",
    "square_grid_problem",
]
