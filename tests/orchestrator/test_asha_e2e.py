"""ASHA early stopping (and a profiled trial) end to end: real Ray Tune, Lightning and MLflow. A grid whose first
trial learns well and whose later ones barely move is cut at the first rung; the good one runs to the end and is
evaluated there."""

from __future__ import annotations

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import run_mm1

pytestmark = pytest.mark.slow

MAX_STEPS, EVERY = 40, 10
SPEC = {
    "name": "asha",
    "experiment": "asha-exp",
    "base": {
        "train": {"max_steps": MAX_STEPS, "batch_size": 4, "log_every_n_steps": 5, "profile": True},
        "eval": {
            "shots": [0],
            "num_examples": 4,
            "max_new_tokens": 4,
            "every_n_steps": EVERY,
            "periodic": "loss",
            "tasks": ["caption"],
        },
    },
    "grid": {"train.lr": [1.0e-2, 1.0e-5, 3.0e-6]},  # in this order: one trial at a time
    "scheduler": {
        "type": "asha",
        "metric": "eval/loss",
        "mode": "min",
        "grace_steps": EVERY,
        "reduction_factor": 2,
        "shuffle": False,  # the order above
    },
    "max_concurrent": 1,
}


@pytest.fixture(scope="module")
def asha_runs(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("asha")
    (workdir / "asha.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    result = run_mm1("sweep", "run", "asha.yaml", cwd=workdir)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(SPEC["experiment"])
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("mm1.role") == "trial"]
    return {run.info.run_name: run for run in runs}, client, result.stdout


def _last_step(client: MlflowClient, run) -> int:
    return max(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))


def test_the_best_trial_runs_to_the_end_and_is_evaluated_there(asha_runs):
    runs, client, _ = asha_runs
    best = runs["lr0.01/s0"]
    assert best.info.status == "FINISHED" and "mm1.stopped_early" not in best.data.tags
    assert _last_step(client, best) == MAX_STEPS
    assert "eval/caption/0shot" in best.data.metrics  # the final evaluation came through
    assert [m.step for m in client.get_metric_history(best.info.run_id, "eval/loss")] == [10, 20, 30, 40]
    assert [m.step for m in client.get_metric_history(best.info.run_id, "eval/caption/0shot")] == [40]  # loss only


def test_a_profiled_trial_logs_its_trace_as_an_artifact(asha_runs):
    runs, client, _ = asha_runs
    logged = [a.path for a in client.list_artifacts(runs["lr0.01/s0"].info.run_id, "profile")]
    assert logged and all(path.endswith(".json") for path in logged)


def test_the_poor_trials_stop_at_the_first_rung_and_say_so(asha_runs):
    runs, client, stdout = asha_runs
    assert len(runs) == 3
    for name in ("lr1e-05/s0", "lr3e-06/s0"):
        run = runs[name]
        assert run.info.status == "FINISHED" and run.data.tags.get("mm1.stopped_early") == "true"
        assert EVERY <= _last_step(client, run) < MAX_STEPS
        assert run.data.metrics["eval/loss"] > runs["lr0.01/s0"].data.metrics["eval/loss"]
        assert run.data.metrics["perf/steps"] == _last_step(client, run)
    assert f"stopped [2/3] lr1e-05/s0 at step {_last_step(client, runs['lr1e-05/s0'])} by the scheduler" in stdout
    used = sum(run.data.metrics["perf/steps"] for run in runs.values())
    assert f"early stopping: 2 of 3 trial(s) stopped by the scheduler; compute {used:,.0f} of 120 trial-steps" in stdout
