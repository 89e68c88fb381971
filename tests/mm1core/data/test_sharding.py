"""Data-parallel sharding: W ranks' batches of ``B / W`` rows are, together and in order, the one-process batch of
``B`` rows; the data position a checkpoint saves is the same on every rank."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mm1core.config import TrialConfig
from mm1core.data.datamodule import PretrainingData
from mm1core.data.mixture import MixtureSchedule
from mm1core.data.sampler import RankShard, RowPlan, RowPlanner
from mm1core.data.tokenizer import build_tokenizer
from tests.mm1core.data.test_sampler import WEIGHTS, sizes
from tests.mm1core.flavours import TINY

BATCH, STEPS = 8, 12


def planner(**options) -> RowPlanner:
    return RowPlanner(MixtureSchedule(WEIGHTS, seed=0), STEPS * BATCH, **options)


def batches(plans: list[RowPlan], size: int) -> list[list[RowPlan]]:
    return [plans[start : start + size] for start in range(0, len(plans), size)]


@pytest.mark.parametrize("world", [2, 4, 8], ids=lambda w: f"world{w}")
@pytest.mark.parametrize("packed", [False, True], ids=["one-document-rows", "packed-rows"])
def test_rank_slices_joined_in_rank_order_are_the_single_process_batches(world: int, packed: bool) -> None:
    options = {"seq_len": 256, "max_images": 8, "document_size": sizes} if packed else {}
    single = batches(list(planner(**options)), BATCH)
    ranks = [batches(list(RankShard(planner(**options), BATCH, rank, world)), BATCH // world) for rank in range(world)]
    assert all(len(shards) == STEPS for shards in ranks)
    for step, whole in enumerate(single):
        assert [plan for rank in range(world) for plan in ranks[rank][step]] == whole


def test_length_counts_this_ranks_rows_from_the_planners_position() -> None:
    shard = RankShard(planner(), BATCH, rank=1, world=2)
    assert len(shard) == len(list(shard)) == STEPS * BATCH // 2
    resumed = planner()
    resumed.load_state_dict({"row": 5 * BATCH, "cursors": {}})  # a checkpoint at step 5
    assert len(RankShard(resumed, BATCH, rank=0, world=2)) == (STEPS - 5) * BATCH // 2


def test_every_rank_saves_the_same_data_position() -> None:
    """Each rank plans every row, so the state before global row ``s * B`` (what a checkpoint at step s stores)
    is the single process's, whichever rank writes it."""
    options = {"seq_len": 256, "max_images": 8, "document_size": sizes}
    single = planner(**options)
    list(single)
    for rank in range(2):
        ranked = planner(**options)
        list(RankShard(ranked, BATCH, rank, world=2))
        assert all(ranked.state_before(step * BATCH) == single.state_before(step * BATCH) for step in range(STEPS))


def test_a_batch_the_workers_cannot_share_equally_is_refused() -> None:
    with pytest.raises(ValueError, match="train.batch_size 6 is not divisible by the 4 data-parallel workers"):
        RankShard(planner(), 6, rank=0, world=4)


def test_the_data_module_shards_by_the_trainers_rank() -> None:
    """The loader Lightning gets on rank r of 2: per-step batches of B/2 rows; both ranks' rows (unpadded) are the
    single process's rows, in order."""
    config = TrialConfig.model_validate({**TINY, "train": {**TINY["train"], "batch_size": 4}})
    tokenizer = build_tokenizer()

    def rows(rank: int, world: int) -> list[list[list[int]]]:
        data = PretrainingData(config, tokenizer)
        data.trainer = SimpleNamespace(global_rank=rank, world_size=world)  # what Lightning attaches
        loader = data.train_dataloader()
        return [[row[row != tokenizer.pad_id].tolist() for row in batch["token_ids"]] for batch in loader]

    single, first, second = rows(0, 1), rows(0, 2), rows(1, 2)
    assert len(single) == len(first) == len(second) == config.train.max_steps
    assert all(len(batch) == 2 for batch in first + second)
    assert [a + b for a, b in zip(first, second, strict=True)] == single
