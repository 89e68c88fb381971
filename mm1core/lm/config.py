"""Typed, torch-free configuration of the decoder's mixture-of-experts layers (GShard / ST-MoE style).

Lives beside the decoder code so that ``mm1core.config`` (the YAML schema) and ``mm1core.lm`` share one
definition; importing it does not import torch.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MoEConfig(BaseModel):
    """Sparse feed-forward layers (Lepikhin et al., 2021 GShard; Zoph et al., 2022 ST-MoE).

    Every ``every_k_layers``-th decoder block (the k-th, 2k-th, ...) replaces its SwiGLU MLP by ``num_experts``
    SwiGLU experts of the same shape; a linear router sends each token to its ``top_k`` experts, gates
    renormalised over the chosen ones. An expert takes at most ``capacity_factor * top_k * tokens / num_experts``
    assignments per batch; the overflow is dropped (the token keeps its residual). The training loss adds
    ``load_balance_coef`` times the load-balancing loss and ``router_z_coef`` times the router z-loss.
    """

    model_config = ConfigDict(extra="forbid")

    num_experts: int = Field(8, ge=1, description="SwiGLU experts per sparse layer")
    every_k_layers: int = Field(2, ge=1, description="every k-th decoder block is sparse (the k-th, 2k-th, ...)")
    top_k: int = Field(2, ge=1, description="experts each token is routed to")
    capacity_factor: float = Field(1.25, gt=0, description="an expert's assignments per batch, x top_k x tokens / E")
    load_balance_coef: float = Field(0.01, ge=0, description="weight of the load-balancing loss (GShard)")
    router_z_coef: float = Field(0.001, ge=0, description="weight of the router z-loss (ST-MoE)")

    @model_validator(mode="after")
    def _top_k_fits(self) -> MoEConfig:
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k {self.top_k} is more than num_experts {self.num_experts}")
        return self

    def is_moe_layer(self, index: int) -> bool:
        """Whether block ``index`` (0-based) is sparse: blocks k-1, 2k-1, ... (every k-th, as GShard)."""
        return (index + 1) % self.every_k_layers == 0

    def capacity(self, num_tokens: int) -> int:
        """Assignments one expert accepts from a batch of ``num_tokens`` tokens (at least one)."""
        return max(1, math.ceil(self.capacity_factor * self.top_k * num_tokens / self.num_experts))
