"""A trial that raises ends FAILED in MLflow with its error, the sweep goes on, and the exit code is 3."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import run_mm1

pytestmark = pytest.mark.slow


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path: Path):
    spec = {
        "name": "faulty",
        "base": {
            "train": {"max_steps": 4, "batch_size": 4, "log_every_n_steps": 2},
            "eval": {"num_examples": 2, "max_new_tokens": 2},
        },
        # a 64-shot prompt cannot fit lm-tiny's context: train_trial raises before training
        "grid": {"eval.shots": [[0], [64]]},
        "max_concurrent": 2,
    }
    (tmp_path / "faulty.yaml").write_text(yaml.safe_dump(spec))
    result = run_mm1("sweep", "run", "faulty.yaml", cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "1 trial(s) failed: shots[64]/s0" in result.stderr
    assert "FAILED" in result.stdout and "FINISHED" in result.stdout

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mm1").experiment_id])
    by_role = {role: [r for r in runs if r.data.tags.get("mm1.role") == role] for role in ("sweep", "trial")}
    assert by_role["sweep"][0].info.status == "FAILED"
    statuses = {r.data.params["eval.shots"]: r for r in by_role["trial"]}
    assert statuses["[0]"].info.status == "FINISHED"
    failed = statuses["[64]"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["mm1.error"].startswith("ValueError: eval.shots: a 64-shot prompt")
