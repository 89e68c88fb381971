"""The row planner: one document a row, or packed rows of one stream; resuming from its state."""

from __future__ import annotations

import pytest

from mm1core.data.mixture import MixtureSchedule
from mm1core.data.records import BadRecord
from mm1core.data.sampler import RowPlanner

WEIGHTS = {"caption": 0.45, "interleaved": 0.45, "text": 0.10}


def sizes(stream: str, index: int) -> tuple[int, int]:
    """A stand-in document size: tokens vary with the index, images by stream."""
    return 20 + (index * 37) % 90, {"caption": 1, "interleaved": 3, "text": 0}[stream]


def planner(rows: int = 400, **options) -> RowPlanner:
    return RowPlanner(MixtureSchedule(WEIGHTS, seed=0), rows, **options)


def test_one_document_a_row_follows_the_schedule() -> None:
    schedule = MixtureSchedule(WEIGHTS, seed=0)
    plans = list(planner(100))
    assert [(plan.stream, plan.documents) for plan in plans] == [
        (schedule.stream_of(row)[0], (schedule.stream_of(row)[1],)) for row in range(100)
    ]


def test_packed_rows_fit_and_use_every_document_once() -> None:
    plans = list(planner(seq_len=256, max_images=8, document_size=sizes))
    used: dict[str, list[int]] = {}
    for plan in plans:
        tokens = sum(sizes(plan.stream, index)[0] for index in plan.documents)
        images = sum(sizes(plan.stream, index)[1] for index in plan.documents)
        assert tokens <= 256 and images <= 8 and plan.documents
        used.setdefault(plan.stream, []).extend(plan.documents)
    for indices in used.values():
        assert indices == list(range(len(indices)))  # consecutive, nothing dropped or repeated
    assert sum(len(plan.documents) for plan in plans) > 2 * len(plans)  # several documents a row


def test_resuming_from_a_saved_state_gives_the_same_rows() -> None:
    uninterrupted = list(planner(seq_len=256, max_images=8, document_size=sizes))
    first = planner(seq_len=256, max_images=8, document_size=sizes)
    head = [plan for _, plan in zip(range(150), first, strict=False)]
    state = first.state_before(150)
    resumed = planner(seq_len=256, max_images=8, document_size=sizes)
    resumed.load_state_dict(state)
    assert head + list(resumed) == uninterrupted


def test_unreadable_documents_are_left_out_and_counted() -> None:
    def flaky(stream: str, index: int) -> tuple[int, int]:
        if index % 5 == 3:
            raise BadRecord(f"{stream}/{index}: truncated")
        return sizes(stream, index)

    plans = list(planner(seq_len=256, max_images=8, document_size=flaky))
    assert sum(plan.skipped for plan in plans) > 0
    assert all(index % 5 != 3 for plan in plans for index in plan.documents)


def test_packing_needs_document_sizes() -> None:
    with pytest.raises(ValueError, match="document_size"):
        planner(seq_len=128)
