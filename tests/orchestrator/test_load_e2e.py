"""Load: a sweep of 50 very short trials completes with all 50 child runs logged, each with its own values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_mm1, run_sweep_trials

pytestmark = pytest.mark.slow

TRIALS = 50
MAX_STEPS = 3


def test_fifty_short_trials_are_all_logged_correctly(tmp_path: Path) -> None:
    spec = {
        "name": "fifty",
        "experiment": "load",
        "base": {
            "model": {"decoder": {"name": "lm-nano"}},
            "train": {"max_steps": MAX_STEPS, "batch_size": 2, "log_every_n_steps": 1},
            "eval": {"shots": [0], "num_examples": 1, "max_new_tokens": 2, "tasks": ["caption"]},
        },
        "grid": {"train.lr": [round(1e-4 * (i + 1), 6) for i in range(TRIALS // 2)]},
        "seeds": [0, 1],
        "max_concurrent": 2,
    }
    runs = run_sweep_trials(tmp_path, spec)
    assert len(runs) == TRIALS
    assert all(run.info.status == "FINISHED" for run in runs)
    plan = json.loads(run_mm1("sweep", "plan", str(tmp_path / "fifty.yaml"), "--json", cwd=tmp_path).stdout)
    expected = {p["trial_key"]: p["varied"] for p in plan}
    assert {run.data.tags["mm1.trial_key"] for run in runs} == set(expected)
    for run in runs:
        varied = expected[run.data.tags["mm1.trial_key"]]
        assert float(run.data.params["train.lr"]) == varied["train.lr"]
        assert int(run.data.params["train.seed"]) == varied["train.seed"]
        assert run.info.run_name == f"lr{varied['train.lr']:g}/s{varied['train.seed']}"
        metrics = run.data.metrics
        assert metrics["eval/caption/0shot"] >= 0 and metrics["perf/samples_per_s"] > 0
        assert run.data.tags["mm1.attempts"] == "1"
