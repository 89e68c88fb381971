"""Vision-language connectors (MM1 Sec. 3.2, Fig. 4). Importing this package does not import torch.

Each entry names the class that builds it (imported on demand) and says which token counts it can
produce from an encoder's patch grid, so a sweep spec is checked before any trial starts.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

from mm1core.registry import Registry


@dataclass(frozen=True)
class ConnectorEntry:
    """``builder`` is ``"module:Class"``; ``token_problem(num_tokens, grid)`` returns why a count is impossible."""

    builder: str
    token_problem: Callable[[int, int], str | None]

    def load(self) -> type:
        module, name = self.builder.split(":")
        return getattr(importlib.import_module(module), name)


def square_grid_problem(num_tokens: int, grid: int) -> str | None:
    """Pooling the ``grid x grid`` patch grid yields ``n x n`` tokens, n <= grid."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        return "not a square number (n x n pooling gives 1, 4, 9, 16, ...)"
    if side > grid:
        return f"needs a {side}x{side} patch grid but the encoder gives only {grid}x{grid}"
    return None


CONNECTORS: Registry[ConnectorEntry] = Registry("connector")
CONNECTORS.register("avg-pool", ConnectorEntry("mm1core.connectors.avg_pool:AvgPoolConnector", square_grid_problem))

__all__ = ["CONNECTORS", "ConnectorEntry"]
