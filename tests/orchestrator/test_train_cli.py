"""`mm1 train TRIAL.yaml`: one trial without Ray, logged to MLflow as a trial run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import run_mm1

pytestmark = pytest.mark.slow


def test_train_one_trial_logs_a_finished_run(tmp_path: Path):
    trial = {
        "train": {"max_steps": 6, "batch_size": 4, "log_every_n_steps": 3},
        "eval": {"shots": [0], "num_examples": 2, "max_new_tokens": 3},
    }
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(trial))
    db = tmp_path / "store.db"
    result = run_mm1("train", "trial.yaml", "--tracking-uri", f"sqlite:///{db}", "--experiment", "solo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eval/caption/0shot" in result.stdout

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("solo").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["mm1.role"] == "trial" and len(run.data.tags["mm1.trial_key"]) == 12
    assert float(run.data.params["train.weight_decay"]) == pytest.approx(1e-4)  # auto = 0.1 * default lr 1e-3
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 6
    assert "eval/avg/0shot" in run.data.metrics
