"""Every registered connector x token count x patch grid: shapes, refusals, gradients, state_dict round trip,
parameter counts, determinism, and which connectors see where a patch is (MM1 Sec. 3.2, Fig. 4)."""

from __future__ import annotations

import io

import pytest
import torch

from mm1core.connectors import CONNECTORS, build_connector
from mm1core.connectors.base import Connector

ENCODER_WIDTH, LM_WIDTH, BATCH = 16, 24, 2  # tiny widths: the folder runs in seconds on a CPU
TOKEN_COUNTS = (1, 4, 6, 16, 64)  # 6: only attn-pool gives a non-square count
GRIDS = (4, 8, 16)

CASES = [(name, num_tokens, grid) for name in CONNECTORS.names() for num_tokens in TOKEN_COUNTS for grid in GRIDS]
POSSIBLE = [
    case for case in CASES if not CONNECTORS.get(case[0]).config(num_tokens=case[1]).problems(ENCODER_WIDTH, case[2])
]
IMPOSSIBLE = [case for case in CASES if case not in POSSIBLE]


def case_id(case: tuple[str, int, int]) -> str:
    name, num_tokens, grid = case
    return f"{name}-{num_tokens}tok-grid{grid}"


def build(name: str, num_tokens: int, seed: int = 0) -> Connector:
    torch.manual_seed(seed)
    return build_connector(CONNECTORS.get(name).config(num_tokens=num_tokens), ENCODER_WIDTH, LM_WIDTH)


def patches(grid: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(BATCH, grid * grid, ENCODER_WIDTH, generator=torch.Generator().manual_seed(seed))


def test_the_matrix_covers_both_outcomes() -> None:
    assert {name for name, *_ in POSSIBLE} == set(CONNECTORS.names())
    assert {name for name, *_ in IMPOSSIBLE} == set(CONNECTORS.names())


@pytest.mark.parametrize("case", POSSIBLE, ids=[case_id(c) for c in POSSIBLE])
def test_output_shape(case: tuple[str, int, int]) -> None:
    name, num_tokens, grid = case
    assert build(name, num_tokens)(patches(grid)).shape == (BATCH, num_tokens, LM_WIDTH)


@pytest.mark.parametrize("case", IMPOSSIBLE, ids=[case_id(c) for c in IMPOSSIBLE])
def test_impossible_counts_are_explained_and_refused(case: tuple[str, int, int]) -> None:
    name, num_tokens, grid = case
    [(field, problem)] = CONNECTORS.get(name).config(num_tokens=num_tokens).problems(ENCODER_WIDTH, grid)
    assert field == "num_tokens" and problem
    with pytest.raises(ValueError, match=r"square|cannot pool|more tokens than patches"):
        build(name, num_tokens)(patches(grid))


@pytest.mark.parametrize("case", POSSIBLE, ids=[case_id(c) for c in POSSIBLE])
def test_gradients_reach_every_parameter_and_the_input(case: tuple[str, int, int]) -> None:
    name, num_tokens, grid = case
    connector, inputs = build(name, num_tokens), patches(grid).requires_grad_()
    output = connector(inputs)
    (output * torch.randn_like(output)).sum().backward()
    for parameter_name, parameter in connector.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name
    assert inputs.grad is not None and inputs.grad.abs().sum() > 0


@pytest.mark.parametrize("case", POSSIBLE, ids=[case_id(c) for c in POSSIBLE])
def test_state_dict_round_trip_gives_identical_outputs(case: tuple[str, int, int]) -> None:
    name, num_tokens, grid = case
    original, restored = build(name, num_tokens, seed=0).eval(), build(name, num_tokens, seed=1).eval()
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(restored(patches(grid)), original(patches(grid)), rtol=0, atol=0)


@pytest.mark.parametrize("case", POSSIBLE, ids=[case_id(c) for c in POSSIBLE])
def test_params_closed_form_matches_the_module(case: tuple[str, int, int]) -> None:
    name, num_tokens, _ = case
    counted = sum(parameter.numel() for parameter in build(name, num_tokens).parameters())
    entry = CONNECTORS.get(name)
    assert entry.params(entry.config(num_tokens=num_tokens), ENCODER_WIDTH, LM_WIDTH) == counted


@pytest.mark.parametrize("name", CONNECTORS.names(), ids=CONNECTORS.names())
def test_params_closed_form_at_a_realistic_size(name: str) -> None:
    torch.manual_seed(0)
    entry = CONNECTORS.get(name)
    connector = build_connector(entry.config(), 64, 128)
    assert entry.params(entry.config(), 64, 128) == sum(p.numel() for p in connector.parameters())


@pytest.mark.parametrize("name", CONNECTORS.names(), ids=CONNECTORS.names())
def test_a_fixed_seed_gives_the_same_module_and_output(name: str) -> None:
    first, second = build(name, 4, seed=3), build(name, 4, seed=3)
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)
    torch.testing.assert_close(first(patches(8)), second(patches(8)), rtol=0, atol=0)
    assert not torch.equal(build(name, 4, seed=4)(patches(8)), first(patches(8)))


# Attention pooling has no position information of its own (the ViT's features carry it); the pooling ones do.
ORDER_MATTERS = {"avg-pool": True, "attn-pool": False, "c-abstractor": True}


@pytest.mark.parametrize("name", CONNECTORS.names(), ids=CONNECTORS.names())
def test_which_connectors_depend_on_patch_order(name: str) -> None:
    connector, inputs = build(name, 16).eval(), patches(8)
    shuffled = inputs[:, torch.randperm(inputs.shape[1], generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        same = torch.allclose(connector(inputs), connector(shuffled), atol=1e-5)
    assert same is not ORDER_MATTERS[name]
