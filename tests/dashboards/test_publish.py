"""``python -m dashboards.publish``: a store copied elsewhere still serves its runs and artifacts through MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mlflow.tracking import MlflowClient

from dashboards.publish import publish


def test_published_store_serves_runs_and_artifacts_from_a_moved_clone(fake_store, tmp_path: Path, monkeypatch) -> None:
    parent = fake_store.add_sweep("exp", "s", [{"params": {"train.lr": 0.001}, "metrics": {"eval/loss": 1.5}}])
    # written on disk where MLflow put the run's artifacts (not through this process's client, which would cache
    # the run's artifact repository at its old place for the rest of the process)
    folder = Path(urlparse(fake_store.client.get_run(parent).info.artifact_uri).path)
    folder.mkdir(parents=True)
    (folder / "note.txt").write_text("hello\n")
    (folder / "dashboards").mkdir()  # mm1 plots' outputs: drawn again from the published store, not shipped
    (folder / "dashboards" / "figure.png").write_bytes(b"png")
    trial = fake_store.trial_runs["s"][0]

    clone = tmp_path / "clone"
    clone.mkdir()
    monkeypatch.chdir(clone)
    publish(fake_store.root / "mlflow.db", Path("results"))
    for path in fake_store.root.glob("mlartifacts"):  # the original artifacts are gone: only the copy can serve
        os.rename(path, tmp_path / "gone")

    client = MlflowClient(tracking_uri=f"sqlite:///{clone}/results/mlflow.db")  # MLflow caches stores by URI
    experiment = client.get_experiment_by_name("exp")
    assert experiment.artifact_location == f"results/mlartifacts/{experiment.experiment_id}"
    assert client.get_run(trial).data.metrics == {"eval/loss": 1.5}
    assert [a.path for a in client.list_artifacts(parent)] == ["note.txt"]
    local = client.download_artifacts(parent, "note.txt", str(tmp_path))
    assert Path(local).read_text() == "hello\n"
    client.log_text(parent, "new\n", "added.txt")  # what mm1 plots does: it lands inside results/
    found = [p.relative_to(tmp_path) for p in tmp_path.rglob("added.txt")]
    assert found == [Path("clone/results/mlartifacts", experiment.experiment_id, parent, "artifacts/added.txt")]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["missing.db", "results"], "missing.db: no such sqlite file"), (["x.db", "/abs"], "dest must be relative")],
)
def test_bad_arguments_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dashboards.publish", *args], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "results").exists()


def test_histories_are_thinned_but_final_values_kept(fake_store, tmp_path: Path, monkeypatch) -> None:
    curve = [(step, 4.0 - step / 100) for step in range(1, 61)]
    fake_store.add_sweep("exp", "s", [{"metrics": {"eval/loss": 1.5}, "history": {"train/loss": curve}}])
    trial = fake_store.trial_runs["s"][0]
    monkeypatch.chdir(tmp_path)
    publish(fake_store.root / "mlflow.db", Path("results"), thin=25)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/results/mlflow.db")  # MLflow caches stores by URI
    kept = {m.step: m.value for m in client.get_metric_history(trial, "train/loss")}
    assert kept == {1: 3.99, 25: 3.75, 50: 3.5, 60: 3.4}  # every 25th, and the first and the last
    assert client.get_run(trial).data.metrics["eval/loss"] == 1.5
