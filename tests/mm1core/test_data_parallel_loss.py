"""``data_parallel_loss``: over 2 real gloo ranks whose rows hold different numbers of targets, the averaged
gradient (what DDP applies) and the logged loss equal one process's on the whole batch."""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mm1core.module import data_parallel_loss, next_token_loss

WORLD, ROWS, LENGTH, VOCAB, WIDTH = 2, 4, 7, 11, 5


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs (ROWS, LENGTH, WIDTH), token ids, a loss mask whose rows hold 6, 1, 3 and 2 targets, and the weight."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(ROWS, LENGTH, WIDTH, generator=generator)
    token_ids = torch.randint(0, VOCAB, (ROWS, LENGTH), generator=generator)
    loss_mask = torch.arange(LENGTH).expand(ROWS, LENGTH) < torch.tensor([[7], [2], [4], [3]])
    return inputs, token_ids, loss_mask, torch.randn(WIDTH, VOCAB, generator=generator)


def loss_and_gradient(rows: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(objective, logged loss, gradient) of the rows ``rows`` under ``data_parallel_loss``."""
    inputs, token_ids, loss_mask, weight = batch()
    weight.requires_grad_(True)
    lm_loss = next_token_loss(inputs[rows] @ weight, token_ids[rows], loss_mask[rows])
    objective, logged = data_parallel_loss(lm_loss, loss_mask[rows])
    objective.backward()
    return objective.detach(), logged, weight.grad


def rank_main(rank: int, port: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's logged loss and DDP's gradient (the mean of the ranks' gradients)."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        share = ROWS // WORLD
        _, logged, gradient = loss_and_gradient(slice(rank * share, (rank + 1) * share))
        dist.all_reduce(gradient)
        return logged, gradient / WORLD
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_without_a_process_group_the_loss_is_unchanged() -> None:
    objective, logged, _ = loss_and_gradient(slice(None))
    inputs, token_ids, loss_mask, weight = batch()
    torch.testing.assert_close(objective, next_token_loss(inputs @ weight, token_ids, loss_mask))
    torch.testing.assert_close(logged, objective)


def test_two_ranks_step_and_log_like_one_process_on_the_whole_batch() -> None:
    _, single_loss, single_gradient = loss_and_gradient(slice(None))
    port = free_port()
    # Rank 1 in a fresh process (spawn: forking a process that has run torch ops can hang), rank 0 in this one.
    peer = mp.get_context("spawn").Process(target=rank_main, args=(1, port))
    peer.start()
    logged, gradient = rank_main(0, port)
    peer.join(timeout=120)
    assert peer.exitcode == 0
    torch.testing.assert_close(logged, single_loss)
    torch.testing.assert_close(gradient, single_gradient)
    # The plain average of the rank means (DDP without the weighting) would not be the batch's gradient here.
    inputs, token_ids, loss_mask, weight = batch()
    weight.requires_grad_(True)
    halves = [next_token_loss(inputs[r] @ weight, token_ids[r], loss_mask[r]) for r in (slice(0, 2), slice(2, 4))]
    (sum(halves) / WORLD).backward()
    assert not torch.allclose(weight.grad, single_gradient)
