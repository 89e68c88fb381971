"""A trial on 2 CPU workers for real: Ray Train V2 ``TorchTrainer``, Lightning DDP over gloo, inside a local
``ray.init(num_cpus=2)``, its results collected as the Tune function would relay them to the driver; compared with
the same trial on one worker. Then the real CLI with ``resources.workers_per_trial: 2``, also under ASHA, whose
stopped trials must give their workers' CPUs back.

Tolerance: both runs do the same arithmetic on the same rows (each rank's loss weighted by its share of the batch's
targets, ``data_parallel_loss``); only the summation order differs (per-rank matmuls over fewer rows, gloo's
all-reduce), i.e. fp32 rounding (measured here: step 1 identical, at most 1e-6 apart over the 20 steps). Step 1
(before any update) must agree to 1e-5, the whole curve to 1e-3, a margin for other BLAS builds and thread counts:
a mis-sharded row, a wrong gradient scale or a lost step moves this toy loss by 1e-2 or more.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mm1core.config import TrialConfig
from mm1core.data.datamodule import PretrainingData
from mm1core.data.tokenizer import build_tokenizer
from mm1core.train import train_trial
from orchestrator.distributed import run_distributed
from orchestrator.payload import CHECKPOINT, ERROR, FINAL, PREDICTIONS, WORKER_GROUP

pytestmark = pytest.mark.slow

STEPS, BATCH, WORKERS = 20, 8, 2
CONFIG = {
    "model": {
        "encoder": {"name": "vit-tiny", "resolution": 32},
        "connector": {"num_tokens": 4},
        "decoder": {"name": "lm-nano"},
    },
    "train": {
        "max_steps": STEPS,
        "batch_size": BATCH,
        "log_every_n_steps": 5,
        "lr": 2e-3,
        "checkpoint_every_n_steps": 10,
    },
    "eval": {"shots": [0], "num_examples": 2, "max_new_tokens": 4, "every_n_steps": 10},
    # Mostly text: some rank's rows hold no image (its encoder gets no gradient), which DDP must handle.
    "data": {"mixture": {"caption": 0.2, "interleaved": 0.1, "text": 0.7}},
}


class RecordingSink:
    """What ``TuneSink`` would report: every (step, metrics) and each flush's extra keys."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []
        self.flushes: list[dict[str, Any]] = []
        self.stop_after = stop_after

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.rows.append((step, dict(metrics)))

    def flush(self, **extra: Any) -> None:
        self.flushes.append(extra)
        if self.stop_after is not None and self.rows[-1][0] > self.stop_after:
            raise RuntimeError("interrupted")  # a crash after the step-10 state was saved

    def curve(self, name: str = "train/loss") -> dict[int, float]:
        return {step: metrics[name] for step, metrics in self.rows if name in metrics and "train/lr" in metrics}

    def final(self) -> dict[str, float]:
        return next(metrics for step, metrics in reversed(self.rows) if "perf/samples_per_s" in metrics)


def payload(tmp_path: Path, config: dict = CONFIG) -> dict[str, Any]:
    return {
        "trial": TrialConfig.model_validate(config).model_dump(mode="json"),
        "threads": 1,
        "key": "t0",
        "checkpoint": str(tmp_path / "t0.pt"),
        "state_dir": str(tmp_path / "t0"),
        "workers": WORKERS,
        "cpus_per_worker": 1,
        "gpus_per_worker": 0,
    }


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def single() -> RecordingSink:
    sink = RecordingSink()
    train_trial(TrialConfig.model_validate(CONFIG), sink=sink, progress_bar=False, threads=1)
    return sink


@pytest.fixture(scope="module")
def two_workers(local_ray, tmp_path_factory) -> tuple[RecordingSink, Path]:
    directory = tmp_path_factory.mktemp("ddp")
    sink = RecordingSink()
    run_distributed(payload(directory), sink)
    return sink, directory


def test_some_rank_trains_on_rows_without_images() -> None:
    """The precondition the mixture is chosen for (the plan is deterministic)."""
    config = TrialConfig.model_validate(CONFIG)
    plans = list(PretrainingData(config, build_tokenizer()).planner)
    share = BATCH // WORKERS
    slices = [plans[start : start + share] for start in range(0, len(plans), share)]
    assert any(all(plan.stream == "text" for plan in rows) for rows in slices)


def test_the_loss_curve_is_the_single_workers(single: RecordingSink, two_workers) -> None:
    ddp, _ = two_workers
    expected, got = single.curve(), ddp.curve()
    assert sorted(got) == list(range(1, STEPS + 1)) == sorted(expected)
    assert abs(got[1] - expected[1]) < 1e-5
    differences = [abs(got[step] - expected[step]) for step in expected]
    assert max(differences) < 1e-3, differences
    assert ddp.curve("train/lr") == pytest.approx(single.curve("train/lr"), rel=1e-9)


def test_the_relayed_results_have_the_single_worker_shape(single: RecordingSink, two_workers) -> None:
    ddp, directory = two_workers
    assert set(ddp.final()) == set(single.final())  # every eval metric and perf/samples_per_s, at the last step
    assert ddp.final()["eval/loss"] == pytest.approx(single.final()["eval/loss"], abs=1e-3)
    periodic = [metrics for step, metrics in ddp.rows if step == 10 and "eval/loss" in metrics]
    assert len(periodic) == 1  # rank 0 alone evaluates
    last = ddp.flushes[-1]
    assert last[FINAL] == 1.0 and last[CHECKPOINT] == str(directory / "t0.pt") and last[PREDICTIONS]
    assert last["perf/train_seconds"] > 0 and last["perf/workers"] == WORKERS
    groups = [extra[WORKER_GROUP] for extra in ddp.flushes if WORKER_GROUP in extra]
    assert ddp.flushes[0] == {WORKER_GROUP: groups[0]} and len(groups) == 1  # with the first burst, for the driver
    assert len(groups[0]) == 36 and int(groups[0], 16)  # a placement group id in hex
    assert not any(ERROR in extra for extra in ddp.flushes)
    assert (directory / "t0.pt").is_file() and not (directory / "t0").exists()  # the resume state is discarded


def test_data_shares_count_every_ranks_rows(single: RecordingSink, two_workers) -> None:
    ddp, _ = two_workers

    def shares(sink: RecordingSink) -> list[dict[str, float]]:
        return [metrics for _, metrics in sink.rows if "data/skipped" in metrics]

    assert shares(ddp)[-1] == shares(single)[-1]


def test_a_two_worker_trial_resumes_from_a_one_worker_state(single: RecordingSink, local_ray, tmp_path: Path) -> None:
    """The resume state does not depend on the worker count: weights, optimizer, data position (global rows)."""
    with pytest.raises(RuntimeError, match="interrupted"):
        train_trial(
            TrialConfig.model_validate(CONFIG),
            sink=RecordingSink(stop_after=10),
            progress_bar=False,
            threads=1,
            state_dir=tmp_path / "t0",
        )
    assert torch.load(tmp_path / "t0" / "last.ckpt", weights_only=False)["global_step"] == 10
    sink = RecordingSink()
    run_distributed(payload(tmp_path), sink)
    assert [step for step, metrics in sink.rows if "train/resumed_from_step" in metrics] == [10]
    resumed, expected = sink.curve(), single.curve()
    assert sorted(resumed) == list(range(11, STEPS + 1))
    assert max(abs(resumed[step] - expected[step]) for step in resumed) < 1e-3


def test_a_failing_trial_sends_its_cause_once_and_raises(local_ray, tmp_path: Path) -> None:
    diverging = {**CONFIG, "train": {**CONFIG["train"], "lr": 1e4}}
    sink = RecordingSink()
    with pytest.raises(Exception):  # noqa: B017 - Ray Train's wrapper of the workers' NonFiniteLoss
        run_distributed(payload(tmp_path, diverging), sink)
    errors = [extra[ERROR] for extra in sink.flushes if ERROR in extra]
    assert len(errors) == 1 and errors[0].startswith("NonFiniteLoss: train/loss is nan at step"), errors
    assert all(value == value for value in sink.curve().values())  # the NaN was never logged


# ``mm1 sweep run`` with Ray's shutdown patched to record first what is left on the cluster when the sweep ends.
SWEEP_WITH_PROBE = """
import json, sys, time
import ray
from orchestrator import cli

def record_then_shutdown(_shutdown=ray.shutdown):
    if ray.is_initialized():
        deadline = time.monotonic() + 10  # a removal frees its resources asynchronously
        while True:
            groups = {key: group["state"] for key, group in ray.util.placement_group_table().items()}
            total, free = ray.cluster_resources()["CPU"], ray.available_resources().get("CPU", 0.0)
            if time.monotonic() > deadline or (free == total and set(groups.values()) <= {"REMOVED"}):
                break
            time.sleep(0.2)
        with open(sys.argv[1], "w") as out:
            json.dump({"groups": groups, "total_cpus": total, "free_cpus": free}, out)
    _shutdown()

ray.shutdown = record_then_shutdown
sys.exit(cli.main(sys.argv[2:]))
"""
SWEEP_TIMEOUT_S = 480  # about 2 x 60 s here


def sweep_with_probe(workdir: Path, spec: dict) -> dict:
    """Runs ``mm1 sweep run`` on ``spec`` (``SWEEP_WITH_PROBE``), which must succeed, and returns what Ray held when
    the sweep ended. A sweep still running after ``SWEEP_TIMEOUT_S`` is interrupted as a user would (Ctrl-C), so that
    its Ray goes too."""
    (workdir / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    command = [sys.executable, "-c", SWEEP_WITH_PROBE, str(workdir / "left.json"), "sweep", "run", "spec.yaml"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
    sweep = subprocess.Popen(command, cwd=workdir, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = sweep.communicate(timeout=SWEEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        sweep.send_signal(signal.SIGINT)
        try:
            output, _ = sweep.communicate(timeout=60)
        finally:
            sweep.kill()
        pytest.fail(f"the sweep hung for {SWEEP_TIMEOUT_S} s:\n{output.decode()[-3000:]}")
    assert sweep.returncode == 0, output.decode()[-3000:]
    return json.loads((workdir / "left.json").read_text())


def test_sweep_of_two_worker_trials_logs_like_one_and_gives_asha_stopped_workers_back(tmp_path: Path) -> None:
    """Through the real CLI: ``run.py`` puts the workers into the payload, reserves ``trial_resources`` and caps the
    trials at once with ``concurrent_trials`` (two trials of 2 workers on 2 cores: one after the other). The first
    trains to the end and logs like a one-worker trial; ASHA stops the second at its step-10 evaluation. A stopped
    trial's Tune function dies before Ray Train can remove its workers' placement group: unless the driver does, it
    stays (and a next trial would never get a CPU)."""
    from mlflow.tracking import MlflowClient

    spec = {
        "name": "ddp-asha",
        "experiment": "ddp-asha-exp",
        "base": {**CONFIG, "train": {**CONFIG["train"], "checkpoint_every_n_steps": None}},
        "grid": {"train.lr": [2e-3, 1e-7]},
        "resources": {"workers_per_trial": WORKERS, "cpus_per_trial": 1},
        "scheduler": {
            "type": "asha",
            "metric": "eval/loss",  # at step 10 (CONFIG): an evaluation is reported at once, train losses may wait
            "mode": "min",
            "grace_steps": 10,
            "reduction_factor": 2,
            "shuffle": False,  # the grid's order: the good trial sets the bar, the next stops at it
        },
    }
    left = sweep_with_probe(tmp_path, spec)
    assert left["free_cpus"] == left["total_cpus"] == 2.0, left
    assert set(left["groups"].values()) == {"REMOVED"}, left  # Tune's trial groups and the workers' alike
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(spec["experiment"])
    trials = [run for run in client.search_runs([experiment.experiment_id]) if run.data.tags.get("mm1.role") == "trial"]
    runs = {run.info.run_name: run for run in trials}
    assert set(runs) == {"lr0.002/s0", "lr1e-07/s0"} and all(run.info.status == "FINISHED" for run in trials)
    assert runs["lr1e-07/s0"].data.tags.get("mm1.stopped_early") == "true"
    full = runs["lr0.002/s0"]
    assert "mm1.stopped_early" not in full.data.tags
    metrics = full.data.metrics
    assert {"train/loss", "train/lr", "eval/loss", "eval/avg/0shot", "perf/samples_per_s"} <= set(metrics)
    assert {"perf/train_seconds", "perf/eval_seconds"} <= set(metrics) and metrics["perf/workers"] == WORKERS
    losses = client.get_metric_history(full.info.run_id, "train/loss")
    assert sorted(m.step for m in losses) == list(range(1, STEPS + 1))
