"""Mixture-of-experts feed-forward (GShard, Lepikhin et al., 2021; Switch, Fedus et al., 2022; ST-MoE, Zoph
et al., 2022), the sparse LLM option of MM1 Sec. 4 (MM1 uses top-2 routing over SwiGLU experts).

route -> dispatch -> combine:

1. A linear router (no bias) gives logits ``(S, E)`` for the ``S = B * T`` tokens; softmax in fp32.
2. Each token picks its ``top_k`` experts; their gates are the chosen probabilities renormalised to sum to 1
   (with ``top_k = 1`` the gate is then 1 and the router learns only from the auxiliary losses).
3. In training, expert ``e`` accepts at most ``moe.capacity(S)`` assignments. GShard priority: all top-1
   choices first, in token order, then all top-2 choices, and so on; the overflow is dropped for that expert
   (the token's other experts still run; a token dropped everywhere keeps just its residual). In eval mode
   nothing is dropped (capacity ``S``, as Switch raises its capacity factor for evaluation): a capacity
   that depends on the batch would make a prompt's answer depend on its batch-mates and on whether it is
   decoded incrementally (KV cache) or in one forward.
4. Each expert, a ``SwiGLU`` of the dense MLP's shape, runs on its kept tokens (``index_select``); outputs
   are weighted by the gates and summed back (``index_add_``).

Padding tokens are routed like any other: they take capacity and count in the losses. With the left padding
of few-shot evaluation that is a few tokens per row; training batches are packed/right-padded by the data
pipeline, and masking them out would need the padding mask down here for little gain.

Auxiliary losses, written to ``MoEFeedForward.last`` by every forward (``Decoder.aux_losses`` averages them):

- load balance (Switch eq. 4, generalised to top-k): ``E * sum_e f_e * P_e``, with ``f_e`` the fraction of
  all ``S * top_k`` assignments (before capacity dropping) that go to expert ``e`` and ``P_e`` the mean
  router probability of ``e`` over the ``S`` tokens. It is 1 under perfectly uniform routing; only ``P_e``
  carries gradient.
- router z-loss (ST-MoE eq. 5): ``mean over tokens of logsumexp(router logits)^2``.

Statistics (detached): ``dropped_frac`` (assignments dropped over all assignments), ``expert_share_min`` and
``expert_share_max`` (the smallest and largest ``f_e``; ``1 / E`` each when balanced).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mm1core.lm.config import MoEConfig
from mm1core.lm.layers import SwiGLU


@dataclass
class Routing:
    """Where every token goes. ``S`` tokens, ``E`` experts, ``k`` = top_k."""

    probs: torch.Tensor  # (S, E) fp32 router softmax
    experts: torch.Tensor  # (S, k) chosen experts, best first
    gates: torch.Tensor  # (S, k) fp32 weights of the chosen experts, summing to 1 per token
    kept: torch.Tensor  # (S, k) bool: the assignment fits its expert's capacity


def route(router_logits: torch.Tensor, top_k: int, capacity: int) -> Routing:
    """``router_logits`` (S, E) -> top-k choices, renormalised gates and GShard capacity priority."""
    probs = router_logits.float().softmax(dim=-1)  # (S, E)
    top_probs, experts = probs.topk(top_k, dim=-1)  # (S, k)
    gates = top_probs / top_probs.sum(dim=-1, keepdim=True)
    return Routing(probs, experts, gates, within_capacity(experts, probs.shape[1], capacity))


def within_capacity(experts: torch.Tensor, num_experts: int, capacity: int) -> torch.Tensor:
    """``(S, k)`` bool: whether each assignment gets a slot, filling every expert with rank-1 choices in token
    order, then rank-2 choices, ... (GShard Algorithm 1)."""
    by_rank = F.one_hot(experts.t(), num_experts)  # (k, S, E): rank-major, then token order
    slot = by_rank.flatten(0, 1).cumsum(dim=0).view_as(by_rank)  # (k, S, E) 1-based slot in the expert
    kept = ((slot <= capacity) & by_rank.bool()).any(dim=-1)  # (k, S)
    return kept.t()  # (S, k)


def routing_losses(router_logits: torch.Tensor, routing: Routing) -> dict[str, torch.Tensor]:
    """Load balance and z-loss (with grad) and routing statistics (detached); see the module docstring."""
    num_tokens, num_experts = routing.probs.shape
    assignments = F.one_hot(routing.experts, num_experts).flatten(0, 1).float()  # (S * k, E)
    share = assignments.mean(dim=0)  # f_e, (E,)
    mean_prob = routing.probs.mean(dim=0)  # P_e, (E,)
    return {
        "load_balance": num_experts * (share * mean_prob).sum(),
        "router_z": torch.logsumexp(router_logits.float(), dim=-1).pow(2).mean(),
        "dropped_frac": 1.0 - routing.kept.float().mean(),
        "expert_share_min": share.min(),
        "expert_share_max": share.max(),
    }


class MoEFeedForward(nn.Module):
    """``(B, T, C) -> (B, T, C)``: ``num_experts`` SwiGLU experts of hidden size ``hidden`` behind a top-k
    router. ``last`` holds the latest forward's losses and statistics (see ``routing_losses``)."""

    def __init__(self, width: int, hidden: int, moe: MoEConfig) -> None:
        super().__init__()
        self.moe = moe
        self.router = nn.Linear(width, moe.num_experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(width, hidden) for _ in range(moe.num_experts))
        self.last: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])  # (S, C)
        router_logits = self.router(tokens)  # (S, E)
        capacity = self.moe.capacity(tokens.shape[0]) if self.training else tokens.shape[0]
        routing = route(router_logits, self.moe.top_k, capacity)
        self.last = routing_losses(router_logits, routing)
        detached = ("dropped_frac", "expert_share_min", "expert_share_max")
        self.last.update({name: self.last[name].detach() for name in detached})
        return self.combine(tokens, routing).view_as(x)

    def combine(self, tokens: torch.Tensor, routing: Routing) -> torch.Tensor:
        """``sum_j gate_j * expert_j(token)`` over each token's kept choices; ``(S, C) -> (S, C)``."""
        output = torch.zeros_like(tokens)
        for index, expert in enumerate(self.experts):
            token_index, rank = torch.nonzero((routing.experts == index) & routing.kept, as_tuple=True)  # (n,)
            if token_index.numel() == 0:
                continue
            expert_output = expert(tokens.index_select(0, token_index))  # (n, C)
            gate = routing.gates[token_index, rank].unsqueeze(-1)  # (n, 1)
            output.index_add_(0, token_index, (expert_output * gate).to(output.dtype))
        return output
