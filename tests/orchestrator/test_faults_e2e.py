"""Faults made to happen for real, through the real CLI, Ray, Lightning and MLflow: an exception in a trial, a
diverging loss, broken data, a worker killed mid-trial (retried from its checkpoint), a driver killed mid-sweep
(resumed), and a second driver on a running sweep."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import run_mm1

pytestmark = pytest.mark.slow

TINY = {
    "model": {"decoder": {"name": "lm-nano"}},
    "train": {"max_steps": 6, "batch_size": 4, "log_every_n_steps": 2},
    "eval": {"shots": [0], "num_examples": 2, "max_new_tokens": 2},
}


def write_spec(workdir: Path, spec: dict) -> Path:
    path = workdir / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def trial_runs(workdir: Path, experiment: str = "mm1") -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=500) if found else []
    return client, [run for run in runs if run.data.tags.get("mm1.role") == "trial"]


def broken_text_file(path: Path) -> Path:
    """A jsonl text source whose first line is fine (it passes validation) and the rest is garbage."""
    lines = [json.dumps({"text": "a red circle above a blue square."})] + [f"{{not json {i}" for i in range(1500)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_trial_that_would_fail_at_start_is_refused_before_ray_starts(tmp_path: Path) -> None:
    spec = {"name": "too-long", "base": TINY, "grid": {"eval.shots": [[0], [64]]}}
    result = run_mm1("sweep", "run", str(write_spec(tmp_path, spec)), cwd=tmp_path)
    assert result.returncode == 2 and "eval.shots: a 64-shot prompt of up to" in result.stderr, result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".mm1").exists()


def test_trial_faults_end_failed_with_their_error_and_the_sweep_goes_on(tmp_path: Path) -> None:
    broken = broken_text_file(tmp_path / "broken.jsonl")
    text_source = {"caption": "synthetic", "interleaved": "synthetic", "text": str(broken)}
    garbled = tmp_path / "garbled-mc.jsonl"  # a TextCore set read only when the trial evaluates: no valid line
    garbled.write_text("{not json\n" * 3)
    spec = {
        "name": "faulty",
        "base": TINY,
        "zip": {  # fine | an exception in the trial | a diverging loss | unreadable data
            "eval.textcore": [["world"], [str(garbled)], ["world"], ["world"]],
            "train.lr": [1e-3, 1e-3, 1e4, 1e-3],
            "data.source": ["synthetic", "synthetic", "synthetic", text_source],
        },
        "max_concurrent": 2,
    }
    result = run_mm1("sweep", "run", str(write_spec(tmp_path, spec)), cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-3000:]
    failed_line = next(line for line in result.stderr.splitlines() if "trial(s) failed" in line)
    assert failed_line.startswith("3 trial(s) failed: ")
    assert result.stdout.count("FAILED") >= 3 and "FINISHED" in result.stdout  # the summary table

    client, runs = trial_runs(tmp_path)
    assert len(runs) == 4

    def case(run) -> tuple[str, str, str]:  # noqa: ANN001
        params = run.data.params
        return params["eval.textcore"] != '["world"]', params["train.lr"], params.get("data.source", "files")

    by_case = {case(run): run for run in runs}
    fine = by_case[(False, "0.001", "synthetic")]
    assert fine.info.status == "FINISHED" and "mm1.error" not in fine.data.tags
    raised = by_case[(True, "0.001", "synthetic")]
    assert raised.info.status == "FAILED"
    assert raised.data.tags["mm1.error"].startswith(f"ValueError: textcore: {garbled} has no valid line")
    diverged = by_case[(False, "10000.0", "synthetic")]
    assert diverged.info.status == "FAILED"
    assert diverged.data.tags["mm1.error"].startswith("NonFiniteLoss: train/loss is nan at step")
    losses = [m.value for m in client.get_metric_history(diverged.info.run_id, "train/loss")]
    assert all(value == value and abs(value) != float("inf") for value in losses)  # the NaN was never logged
    data_error = by_case[(False, "0.001", "files")]
    assert data_error.data.params["data.source.text"] == str(broken) and data_error.info.status == "FAILED"
    assert "unreadable documents in a row; is the data broken?" in data_error.data.tags["mm1.error"]
    parent = next(r for r in client.search_runs([fine.info.experiment_id]) if r.data.tags["mm1.role"] == "sweep")
    assert parent.info.status == "FAILED"


def _workers() -> set[int]:
    found = subprocess.run(["pgrep", "-f", "ray::ImplicitFunc"], capture_output=True, text=True).stdout.split()
    return {int(pid) for pid in found}


def _wait_for(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_killed_worker_is_retried_from_its_last_checkpoint(tmp_path: Path) -> None:
    spec = {
        "name": "retry",
        "base": {**TINY, "train": {**TINY["train"], "max_steps": 80, "checkpoint_every_n_steps": 10}},
        "failure": {"max_retries": 1},
    }
    path = write_spec(tmp_path, spec)
    key = json.loads(run_mm1("sweep", "plan", str(path), "--json", cwd=tmp_path).stdout)[0]["trial_key"]
    state = tmp_path / ".mm1" / "checkpoints" / "retry" / key / "last.ckpt"
    before = _workers()
    driver = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "sweep", "run", str(path)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
    )
    try:
        _wait_for(state.is_file, 240, "the first resume checkpoint")
        victims = _workers() - before
        assert victims, "no Ray trial worker found"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)  # the fault: the trial's process dies mid-training
        stdout, stderr = driver.communicate(timeout=400)
    finally:
        driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    assert "retry " in stdout and "resume  [1/1] from step " in stdout

    client, runs = trial_runs(tmp_path)
    assert len(runs) == 1  # the retry continued the trial's run
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["mm1.attempts"] == "2"
    resumed = int(run.data.tags["mm1.resumed_from_step"])
    assert resumed >= 10 and resumed % 10 == 0  # from a saved state, not from scratch
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "train/loss")}
    assert steps == set(range(1, 81))
    assert not state.exists()  # the resume state is dropped once the trial finished


def test_a_killed_driver_resumes_only_unfinished_trials_without_duplicates(tmp_path: Path) -> None:
    spec = {
        "name": "crash",
        "base": {**TINY, "train": {**TINY["train"], "max_steps": 60, "checkpoint_every_n_steps": 10}},
        "grid": {"train.lr": [1e-3, 2e-3, 3e-3]},
        "max_concurrent": 1,
    }
    path = write_spec(tmp_path, spec)
    plan = json.loads(run_mm1("sweep", "plan", str(path), "--json", cwd=tmp_path).stdout)
    states = [tmp_path / ".mm1" / "checkpoints" / "crash" / p["trial_key"] / "last.ckpt" for p in plan]
    driver = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "sweep", "run", str(path)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
    )
    try:
        _wait_for(lambda: any(state.is_file() for state in states[1:]), 300, "a second trial's checkpoint")
        _, runs = trial_runs(tmp_path)
        finished_before = {r.data.tags["mm1.trial_key"]: r.info.end_time for r in runs if r.info.status == "FINISHED"}
        driver.send_signal(signal.SIGKILL)  # the fault: the sweep's driver dies mid-sweep
        driver.wait(timeout=30)
    finally:
        driver.kill()
    assert len(finished_before) >= 1
    _, runs = trial_runs(tmp_path)
    assert any(r.info.status == "RUNNING" for r in runs)  # left behind by the dead driver

    again = run_mm1("sweep", "run", str(path), "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(finished_before)} of 3 trials already FINISHED in MLflow: not run again" in again.stdout
    assert "continue their earlier MLflow run" in again.stdout

    client, runs = trial_runs(tmp_path)
    keys = [r.data.tags["mm1.trial_key"] for r in runs]
    assert sorted(keys) == sorted(p["trial_key"] for p in plan)  # one run per trial: no duplicates
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        key = run.data.tags["mm1.trial_key"]
        if key in finished_before:  # not run again
            assert run.info.end_time == finished_before[key] and run.data.tags["mm1.attempts"] == "1"
    resumed = [r for r in runs if r.data.tags["mm1.attempts"] == "2"]
    assert len(resumed) == 1  # the trial the driver was running when it died was resumed into
    assert resumed[0].data.tags["mm1.earlier_error"] == "the sweep's driver stopped before this trial ended"
    assert int(resumed[0].data.tags["mm1.resumed_from_step"]) >= 10
    plain = run_mm1("sweep", "run", str(path), cwd=tmp_path)
    assert plain.returncode == 0 and "nothing to run" in plain.stdout


def test_a_second_driver_on_a_running_sweep_is_refused(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("mm1", artifact_location=(tmp_path / "mlartifacts").as_uri())
    tags = {"mm1.role": "sweep", "mm1.sweep": "busy", "mm1.driver": f"{socket.gethostname()}:{os.getpid()}"}
    client.create_run(experiment_id, run_name="busy", tags=tags)  # RUNNING, its driver (this process) alive
    result = run_mm1("sweep", "run", str(write_spec(tmp_path, {"name": "busy", "base": TINY})), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"mm1: error: sweep 'busy' is already running (driver pid {os.getpid()} on this machine); wait or stop it"
    )
    assert trial_runs(tmp_path)[1] == []
