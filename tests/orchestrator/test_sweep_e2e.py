"""End to end through real Ray Tune, real Lightning and a real MLflow sqlite store in a tmp dir.

Asserts the MLflow layout DESIGN.md promises, and that a re-run starts no trial again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mm1core.config import TrialConfig
from tests.conftest import run_mm1

pytestmark = pytest.mark.slow

MAX_STEPS = 12
SPEC = {
    "name": "e2e",
    "experiment": "e2e-exp",
    "description": "e2e: two learning rates",
    "base": {
        "train": {"max_steps": MAX_STEPS, "batch_size": 4, "log_every_n_steps": 5},
        "eval": {"shots": [0, 1], "num_examples": 4, "max_new_tokens": 4},
    },
    "grid": {"train.lr": [1.0e-3, 3.0e-3]},
    "resources": {"cpus_per_trial": 1},
    "max_concurrent": 2,
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, Path, object]:
    workdir = tmp_path_factory.mktemp("sweep")
    spec = workdir / "e2e.yaml"
    import yaml

    spec.write_text(yaml.safe_dump(SPEC))
    result = run_mm1("sweep", "run", str(spec), cwd=workdir)
    return workdir, spec, result


def _client(workdir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


def _runs(workdir: Path):
    client = _client(workdir)
    experiment = client.get_experiment_by_name("e2e-exp")
    return client, client.search_runs([experiment.experiment_id], max_results=100)


def test_sweep_succeeds_and_prints_where_to_look(swept):
    _, _, result = swept
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mlflow ui --backend-store-uri sqlite:///" in result.stdout
    assert "per-trial overhead" in result.stdout and "overhead -" not in result.stdout
    assert "Token authentication" not in result.stderr  # Ray's warning, for a local instance mm1 starts itself
    assert "trained models: " in result.stdout and "mm1 eval CHECKPOINT" in result.stdout
    assert result.stdout.count("FINISHED") >= 2  # the summary table, one line per trial
    assert "mm1 plots --experiment e2e-exp --sweep e2e" in result.stdout
    assert "mm1 lessons --experiment e2e-exp" in result.stdout


def test_the_experiment_created_takes_the_sweep_description(swept):
    experiment = _client(swept[0]).get_experiment_by_name("e2e-exp")
    assert experiment.tags["mlflow.note.content"] == SPEC["description"]  # the MLflow UI's experiment description


def test_sweep_writes_its_report_and_names_runs_by_varied_values(swept):
    workdir = swept[0]
    index = workdir / ".mm1" / "reports" / "e2e" / "index.html"
    assert index.is_file() and "learning" in index.read_text().lower()
    assert any((workdir / ".mm1" / "reports" / "e2e").glob("learning-curves-e2e.png"))
    client, runs = _runs(workdir)
    children = [r for r in runs if r.data.tags.get("mm1.role") == "trial"]
    assert {c.info.run_name for c in children} == {"lr0.001/s0", "lr0.003/s0"}
    parent = next(r for r in runs if r.data.tags.get("mm1.role") == "sweep")
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "dashboards")}
    assert "dashboards/index.html" in logged and "dashboards/learning-curves-e2e.png" in logged


def test_parent_and_nested_children(swept):
    workdir = swept[0]
    _, runs = _runs(workdir)
    parents = [r for r in runs if r.data.tags.get("mm1.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mm1.role") == "trial"]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.run_name == "e2e" and parent.data.tags["mm1.sweep"] == "e2e"
    assert parent.info.status == "FINISHED"
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["mm1.sweep"] == "e2e"
        assert child.info.status == "FINISHED"
    plan = json.loads(run_mm1("sweep", "plan", "--json", str(swept[1]), cwd=workdir).stdout)
    assert {c.data.tags["mm1.trial_key"] for c in children} == {p["trial_key"] for p in plan}


def test_parent_artifacts(swept):
    workdir, _, _ = swept
    client, runs = _runs(workdir)
    parent = next(r for r in runs if r.data.tags.get("mm1.role") == "sweep")
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep.yaml", "plan.json"} <= names


def test_child_params_are_every_leaf_of_the_resolved_config(swept):
    workdir, _, _ = swept
    _, runs = _runs(workdir)
    children = [r for r in runs if r.data.tags.get("mm1.role") == "trial"]
    leaves = set(TrialConfig().flat_params())
    for child in children:
        params = child.data.params
        assert leaves <= set(params)
        assert int(params["model.decoder.non_embedding_params"]) > 0
        assert float(params["train.weight_decay"]) == pytest.approx(0.1 * float(params["train.lr"]))
    assert {float(c.data.params["train.lr"]) for c in children} == {1e-3, 3e-3}


def test_child_metrics_every_step_and_eval(swept):
    workdir, _, _ = swept
    client, runs = _runs(workdir)
    for child in (r for r in runs if r.data.tags.get("mm1.role") == "trial"):
        losses = client.get_metric_history(child.info.run_id, "train/loss")
        assert len(losses) == MAX_STEPS
        assert len({m.step for m in losses}) == MAX_STEPS
        assert len(client.get_metric_history(child.info.run_id, "train/lr")) == MAX_STEPS
        metrics = child.data.metrics
        for name in ("eval/caption/0shot", "eval/caption/1shot", "eval/avg/0shot", "eval/avg/1shot"):
            assert 0.0 <= metrics[name] <= 1000.0, name
        assert metrics["perf/samples_per_s"] > 0
        assert metrics["perf/train_seconds"] > 0


def test_rerun_starts_no_trial_and_status_reads_mlflow(swept):
    workdir, spec, _ = swept
    again = run_mm1("sweep", "run", str(spec), cwd=workdir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "nothing to run" in again.stdout
    _, runs = _runs(workdir)
    assert len([r for r in runs if r.data.tags.get("mm1.role") == "trial"]) == 2
    status = run_mm1("sweep", "status", str(spec), cwd=workdir)
    assert status.returncode == 0
    assert "2 FINISHED" in status.stdout
