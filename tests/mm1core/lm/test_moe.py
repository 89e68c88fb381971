"""Mixture-of-experts feed-forward: losses by hand, top-k routing, GShard capacity, dense equivalence, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from mm1core.lm import MoEConfig
from mm1core.lm.layers import SwiGLU
from mm1core.lm.moe import MoEFeedForward, route, routing_losses

ROUTER_LOGITS = [[2.0, 1.0, 0.0, 0.0], [0.0, 3.0, 1.0, 0.0], [1.0, 0.0, 0.0, 2.0]]  # 3 tokens, 4 experts


def identity_router_moe(moe: MoEConfig) -> MoEFeedForward:
    """A MoE of width ``num_experts`` whose router is the identity: the input *is* the router logits."""
    torch.manual_seed(0)
    layer = MoEFeedForward(moe.num_experts, 8, moe)
    with torch.no_grad():
        layer.router.weight.copy_(torch.eye(moe.num_experts))
    return layer


def test_losses_and_statistics_by_hand() -> None:
    layer = identity_router_moe(MoEConfig(num_experts=4, top_k=2, capacity_factor=1.25))
    layer(torch.tensor([ROUTER_LOGITS]))  # (1, 3, 4)
    probs = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in ROUTER_LOGITS]
    share = [2 / 6, 2 / 6, 1 / 6, 1 / 6]  # top-2 choices: {0, 1}, {1, 2}, {3, 0}
    mean_prob = [sum(row[e] for row in probs) / 3 for e in range(4)]
    load_balance = 4 * sum(f * p for f, p in zip(share, mean_prob, strict=True))
    router_z = sum(math.log(sum(math.exp(v) for v in row)) ** 2 for row in ROUTER_LOGITS) / 3
    assert float(layer.last["load_balance"].detach()) == pytest.approx(load_balance, rel=1e-6)
    assert float(layer.last["router_z"].detach()) == pytest.approx(router_z, rel=1e-6)
    assert float(layer.last["dropped_frac"]) == 0.0  # capacity ceil(1.25 * 2 * 3 / 4) = 2 fits every expert
    assert float(layer.last["expert_share_min"]) == pytest.approx(1 / 6)
    assert float(layer.last["expert_share_max"]) == pytest.approx(1 / 3)


def test_uniform_routing_has_load_balance_one() -> None:
    routing = route(torch.zeros(8, 4), top_k=2, capacity=100)
    assert float(routing_losses(torch.zeros(8, 4), routing)["load_balance"]) == pytest.approx(1.0)


def test_routing_picks_the_top_two_with_renormalised_gates() -> None:
    routing = route(torch.tensor(ROUTER_LOGITS), top_k=2, capacity=100)
    assert routing.experts.tolist() == [[0, 1], [1, 2], [3, 0]]
    probs = torch.tensor(ROUTER_LOGITS).softmax(-1)
    chosen = probs.gather(1, routing.experts)
    torch.testing.assert_close(routing.gates, chosen / chosen.sum(1, keepdim=True))
    assert routing.kept.all()


def test_capacity_drops_overflow_with_gshard_priority() -> None:
    """Expert 0 holds 2: the top-1 choices of tokens 2 and 3 win over the earlier tokens' top-2 choices."""
    logits = torch.tensor(
        [[2.0, 3.0, 0.0, -1.0], [2.0, 3.0, 0.0, -1.0], [3.0, 2.0, 0.0, -1.0], [3.0, -1.0, 2.0, 0.0]]
    )  # top-2: (1, 0), (1, 0), (0, 1), (0, 2)
    moe = MoEConfig(num_experts=4, top_k=2, capacity_factor=1.0)
    assert moe.capacity(4) == 2
    routing = route(logits, moe.top_k, moe.capacity(4))
    assert routing.kept.tolist() == [[True, False], [True, False], [True, False], [True, True]]
    assert float(routing_losses(logits, routing)["dropped_frac"]) == pytest.approx(3 / 8)


def test_a_token_dropped_everywhere_outputs_zero() -> None:
    layer = identity_router_moe(MoEConfig(num_experts=2, top_k=1, capacity_factor=0.5))
    output = layer(torch.tensor([[[2.0, 0.0], [3.0, 0.0]]]))  # both want expert 0, which takes 1
    assert output[0, 0].abs().sum() > 0
    torch.testing.assert_close(output[0, 1], torch.zeros(2))


def test_eval_mode_drops_nothing() -> None:
    layer = identity_router_moe(MoEConfig(num_experts=2, top_k=1, capacity_factor=0.5)).eval()
    output = layer(torch.tensor([[[2.0, 0.0], [3.0, 0.0]]]))
    assert output[0, 1].abs().sum() > 0 and float(layer.last["dropped_frac"]) == 0.0


@pytest.mark.parametrize(
    "moe",
    [MoEConfig(num_experts=4, top_k=2, capacity_factor=8.0), MoEConfig(num_experts=1, top_k=1, capacity_factor=8.0)],
    ids=["4-identical-experts-top2", "1-expert-top1"],
)
def test_identical_experts_with_room_equal_the_dense_mlp(moe: MoEConfig) -> None:
    torch.manual_seed(0)
    dense = SwiGLU(16, 40)
    layer = MoEFeedForward(16, 40, moe)
    for expert in layer.experts:
        expert.load_state_dict(dense.state_dict())
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(layer(x), dense(x))
    assert float(layer.last["dropped_frac"]) == 0.0


def test_gradients_reach_the_router_and_every_used_expert() -> None:
    torch.manual_seed(0)
    layer = MoEFeedForward(16, 32, MoEConfig(num_experts=4, top_k=2))
    output = layer(torch.randn(2, 16, 16))
    (output.pow(2).mean() + layer.last["load_balance"] + layer.last["router_z"]).backward()
    assert layer.router.weight.grad.abs().sum() > 0
    for expert in layer.experts:
        assert all(parameter.grad.abs().sum() > 0 for parameter in expert.parameters())


def test_router_gets_gradient_from_the_task_loss_alone() -> None:
    torch.manual_seed(0)
    layer = MoEFeedForward(16, 32, MoEConfig(num_experts=4, top_k=2))
    layer(torch.randn(1, 8, 16)).pow(2).mean().backward()  # through the gates only
    assert layer.router.weight.grad.abs().sum() > 0
