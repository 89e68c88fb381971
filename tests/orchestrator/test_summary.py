"""The end-of-sweep overhead line: wall time against summed training time, never a negative overhead."""

from __future__ import annotations

import re

import pandas as pd

from orchestrator.summary import overhead_line


def table(*train_seconds: float) -> pd.DataFrame:
    return pd.DataFrame({"trial_key": [f"k{i}" for i in range(len(train_seconds))], "train_s": list(train_seconds)})


def keys(count: int) -> set[str]:
    return {f"k{i}" for i in range(count)}


def test_one_trial_at_a_time_gives_the_overhead_per_trial() -> None:
    line = overhead_line(table(40.0, 40.0), keys(2), wall_seconds=100.0, concurrency=1)
    assert line == (
        "sweep wall time 100.0 s for 2 trial(s); summed training time 80.0 s; "
        "per-trial overhead 10.0 s (wall - summed training, per trial)"
    )


def test_trials_at_once_give_the_speed_up_and_the_overhead_per_slot() -> None:
    # 4 trials of 40 s, 2 at a time, in 100 s: summed training (160 s) exceeds the wall time.
    line = overhead_line(table(40.0, 40.0, 40.0, 40.0), keys(4), wall_seconds=100.0, concurrency=2)
    assert "summed training time 160.0 s" in line and "2 at once" in line
    assert "parallel speed-up 1.60x" in line
    assert "per-trial overhead 10.0 s (wall x 2 - summed training, per trial)" in line  # (100 * 2 - 160) / 4


def test_no_overhead_is_ever_negative() -> None:
    for concurrency in (None, 1, 2, 8):
        line = overhead_line(table(60.0, 60.0), keys(2), wall_seconds=50.0, concurrency=concurrency)
        assert not re.search(r"overhead -", line), line
        assert line.startswith("sweep wall time 50.0 s for 2 trial(s)")  # bench/overhead.py parses this start


def test_unknown_concurrency_gives_the_speed_up_alone() -> None:
    line = overhead_line(table(30.0, 30.0, 30.0), keys(3), wall_seconds=45.0, concurrency=None)
    assert "parallel speed-up 2.00x" in line and "overhead" not in line
