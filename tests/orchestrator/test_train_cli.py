"""`mm1 train TRIAL.yaml`: one trial without Ray, logged to MLflow as a trial run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import run_mm1

pytestmark = pytest.mark.slow


def test_train_one_trial_logs_a_finished_run(tmp_path: Path):
    trial = {
        "train": {"max_steps": 9, "batch_size": 4, "log_every_n_steps": 3},
        "eval": {"shots": [0], "num_examples": 2, "max_new_tokens": 3},
    }
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(trial))
    db = tmp_path / "store.db"
    store = ("--tracking-uri", f"sqlite:///{db}", "--experiment", "solo")
    result = run_mm1("train", "trial.yaml", *store, "--set", "train.max_steps=6", cwd=tmp_path)  # over the file
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eval/caption/0shot" in result.stdout

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("solo").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["mm1.role"] == "trial" and len(run.data.tags["mm1.trial_key"]) == 12
    assert float(run.data.params["train.weight_decay"]) == pytest.approx(1e-4)  # auto = 0.1 * default lr 1e-3
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 6 == int(run.data.params["train.max_steps"])
    assert "step 6/6" in result.stdout.replace("\r", "\n") and "Epoch" not in result.stdout  # the progress bar
    assert "eval/avg/0shot" in run.data.metrics


def test_trained_checkpoint_evaluates_alone_and_predictions_are_logged(tmp_path: Path):
    trial = {
        "train": {"max_steps": 4, "batch_size": 4, "log_every_n_steps": 2},
        "eval": {"shots": [0], "num_examples": 3, "max_new_tokens": 3, "tasks": ["caption", "vqa"]},
    }
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(trial))
    db = f"sqlite:///{tmp_path / 'store.db'}"
    checkpoint = tmp_path / "model.pt"
    result = run_mm1("train", "trial.yaml", "--tracking-uri", db, "--checkpoint", str(checkpoint), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=db)
    (run,) = client.search_runs([client.get_experiment_by_name("mm1").experiment_id])
    assert run.data.tags["mm1.checkpoint"] == str(checkpoint) and checkpoint.is_file()
    assert "predictions.json" in {artifact.path for artifact in client.list_artifacts(run.info.run_id)}

    evaluated = run_mm1("eval", str(checkpoint), "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads(evaluated.stdout)
    for name in ("eval/caption/0shot", "eval/vqa/0shot"):  # the same model and items: the same scores
        assert metrics[name] == pytest.approx(run.data.metrics[name])
    other = json.loads(run_mm1("eval", str(checkpoint), "--tasks", "counting", "--json", cwd=tmp_path).stdout)
    assert "eval/counting/0shot" in other and "eval/caption/0shot" not in other


def test_eval_of_a_missing_or_foreign_checkpoint_is_bad_input(tmp_path: Path):
    missing = run_mm1("eval", "nope.pt", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip() == "mm1: error: nope.pt: no such checkpoint file"
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint")
    foreign = run_mm1("eval", "foreign.pt", cwd=tmp_path)
    assert foreign.returncode == 2 and "Traceback" not in foreign.stderr
    assert foreign.stderr.startswith("mm1: error: foreign.pt: ")
