"""Fake experiments made through the real MLflow API in a tmp sqlite store, laid out as ``mm1 sweep run`` does."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID


class FakeStore:
    """``add_sweep`` writes a parent run and one nested trial run per entry of ``trials``.

    A trial is a dict: ``params`` (dotted path -> value), ``metrics`` (name -> final value), optional
    ``history`` (name -> [(step, value), ...]), ``status`` (default FINISHED), ``name`` (run name), ``tags``
    (extra run tags, e.g. ``mm1.init_from_run``). ``trial_runs[sweep]`` lists the trial run ids in order.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri)
        self.trial_runs: dict[str, list[str]] = {}

    def experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=(self.root / "mlartifacts").as_uri())

    def add_sweep(self, experiment: str, sweep: str, trials: Sequence[dict[str, Any]]) -> str:
        experiment_id = self.experiment(experiment)
        parent = self.client.create_run(experiment_id, run_name=sweep, tags={"mm1.role": "sweep", "mm1.sweep": sweep})
        parent_id = parent.info.run_id
        for index, trial in enumerate(trials):
            tags = {
                MLFLOW_PARENT_RUN_ID: parent_id,
                "mm1.role": "trial",
                "mm1.sweep": sweep,
                "mm1.trial_key": trial.get("key", f"{sweep}-{index:04d}"),
                **trial.get("tags", {}),
            }
            run = self.client.create_run(experiment_id, run_name=trial.get("name", f"trial-{index}"), tags=tags)
            run_id = run.info.run_id
            self.trial_runs.setdefault(sweep, []).append(run_id)
            now = int(time.time() * 1000)
            params = [Param(k, str(v)) for k, v in trial.get("params", {}).items()]
            metrics = [Metric(k, float(v), now, 0) for k, v in trial.get("metrics", {}).items()]
            for name, points in trial.get("history", {}).items():
                metrics += [Metric(name, float(value), now, int(step)) for step, value in points]
            for start in range(0, max(len(params), 1), 100):
                self.client.log_batch(run_id, params=params[start : start + 100])
            for start in range(0, len(metrics), 900):
                self.client.log_batch(run_id, metrics=metrics[start : start + 900])
            self.client.set_terminated(run_id, status=trial.get("status", "FINISHED"))
        self.client.set_terminated(parent_id, status="FINISHED")
        return parent_id


@pytest.fixture
def fake_store(tmp_path: Path) -> FakeStore:
    return FakeStore(tmp_path)
