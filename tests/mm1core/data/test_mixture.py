"""The mixture schedule (MM1 Sec. 3.3): exact shares, zero weights, random access, seed dependence."""

from __future__ import annotations

import pytest

from mm1core.data.mixture import MixtureSchedule
from mm1core.data.records import STREAMS

RATIOS = [
    {"caption": 0.45, "interleaved": 0.45, "text": 0.10},  # MM1's 5:5:1 (rounded)
    {"caption": 1.0, "interleaved": 0.0, "text": 0.0},
    {"caption": 0.5, "interleaved": 0.5, "text": 0.0},
    {"caption": 0.0, "interleaved": 1.0, "text": 0.0},
    {"caption": 1 / 3, "interleaved": 2 / 3, "text": 0.0},
    {"caption": 0.05, "interleaved": 0.05, "text": 0.9},
]


@pytest.mark.parametrize("weights", RATIOS, ids=lambda w: "/".join(f"{w[s]:.2f}" for s in STREAMS))
def test_shares_over_10k_rows_match_the_weights(weights: dict[str, float]) -> None:
    schedule = MixtureSchedule(weights, seed=3)
    rows = [schedule.stream_of(row)[0] for row in range(10_000)]
    for stream in STREAMS:
        share = rows.count(stream) / len(rows)
        assert share == pytest.approx(weights[stream], abs=1e-3), stream  # stated tolerance: 0.1 percentage point
        if weights[stream] == 0:
            assert stream not in rows
    assert schedule.counts(10_000) == {stream: rows.count(stream) for stream in STREAMS}


def test_every_stretch_of_training_is_close_to_the_weights() -> None:
    """Stratified: any 200 consecutive rows are close to the weights (only the two partial blocks at the ends
    vary), where independent draws would stray by up to about 3 standard deviations (21 caption rows)."""
    schedule = MixtureSchedule(RATIOS[0], seed=0)
    for start in range(0, 5_000, 37):
        window = [schedule.stream_of(row)[0] for row in range(start, start + 200)]
        assert abs(window.count("text") - 20) <= 2 and abs(window.count("caption") - 90) <= 4


def test_within_stream_indices_count_each_streams_rows_in_order() -> None:
    schedule = MixtureSchedule(RATIOS[0], seed=1)
    seen: dict[str, list[int]] = {stream: [] for stream in STREAMS}
    for row in range(1_000):
        stream, index = schedule.stream_of(row)
        seen[stream].append(index)
    for indices in seen.values():
        assert indices == list(range(len(indices)))  # no document twice, none skipped


def test_random_access_equals_sequential_and_depends_on_seed_and_weights_only() -> None:
    schedule = MixtureSchedule(RATIOS[0], seed=1)
    sequential = [schedule.stream_of(row) for row in range(500)]
    fresh = MixtureSchedule(RATIOS[0], seed=1)
    assert [fresh.stream_of(row) for row in reversed(range(500))][::-1] == sequential
    assert [MixtureSchedule(RATIOS[0], seed=2).stream_of(row) for row in range(500)] != sequential


def test_all_zero_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="all be zero"):
        MixtureSchedule({"caption": 0.0, "interleaved": 0.0, "text": 0.0}, seed=0)
