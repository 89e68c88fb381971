"""Vision-language connectors (MM1 Sec. 3.2, Fig. 4). Importing this package does not import torch.

Each entry names the class that builds it (imported on demand), says which token counts it can produce from
an encoder's patch grid and how many parameters it has, so a sweep spec is checked before any trial starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from mm1core.connectors.sizes import (
    attn_pool_params,
    avg_pool_params,
    c_abstractor_params,
    patch_count_problem,
    square_grid_problem,
)
from mm1core.registry import Registry


@dataclass(frozen=True)
class ConnectorEntry:
    """One connector family.

    ``builder`` is ``"module:Class"``, called as ``Class(encoder_width, lm_width, num_tokens)``;
    ``description`` is one line for ``mm1 registry``; ``token_problem(num_tokens, grid)`` returns why a count is
    impossible from a ``grid x grid`` patch grid (``None`` if possible); ``params(encoder_width, lm_width,
    num_tokens)`` is the built module's parameter count in closed form.
    """

    builder: str
    description: str
    token_problem: Callable[[int, int], str | None]
    params: Callable[[int, int, int], int]

    def load(self) -> type:
        module, name = self.builder.split(":")
        return getattr(importlib.import_module(module), name)


CONNECTORS: Registry[ConnectorEntry] = Registry("connector")
CONNECTORS.register(
    "avg-pool",
    ConnectorEntry(
        "mm1core.connectors.avg_pool:AvgPoolConnector",
        "n x n average pooling of the patch grid, then an MLP (MM1 Fig. 4)",
        square_grid_problem,
        avg_pool_params,
    ),
)
CONNECTORS.register(
    "attn-pool",
    ConnectorEntry(
        "mm1core.connectors.attn_pool:AttentionPoolConnector",
        "k learnable queries cross-attend to the patches, then an MLP (MM1 Fig. 4)",
        patch_count_problem,
        attn_pool_params,
    ),
)
CONNECTORS.register(
    "c-abstractor",
    ConnectorEntry(
        "mm1core.connectors.c_abstractor:CAbstractor",
        "residual conv blocks, n x n average pooling, conv blocks, MLP (Honeybee C-Abstractor)",
        square_grid_problem,
        c_abstractor_params,
    ),
)

__all__ = ["CONNECTORS", "ConnectorEntry", "patch_count_problem", "square_grid_problem"]
