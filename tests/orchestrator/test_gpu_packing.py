"""Fractional GPUs pack small trials: with ``resources.gpus_per_trial: 0.5`` Tune runs two trials at a time on one
GPU, whatever CPUs are free. Ray's GPU here is logical (``ray.init(num_gpus=1)``), so this runs on a CPU-only
machine; there a trial that Ray gives half a GPU finds no CUDA device and Lightning (``accelerator="auto"``) trains
on the CPU."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.distributed import trial_resources
from orchestrator.spec import Resources

pytestmark = pytest.mark.slow  # a Ray start-up and a Tune run, of trivial trials

HOLD_S = 4.0  # how long each trial holds its share: long enough that the first two overlap on a loaded machine
TRIALS = 4
HALF_GPU = Resources(cpus_per_trial=1, gpus_per_trial=0.5)


@pytest.fixture(scope="module")
def ray_with_one_gpu() -> Iterator[None]:
    import ray

    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


def hold_a_share(config: dict[str, Any]) -> None:
    """A trial that only records when it ran and what Ray gave it."""
    import ray
    from ray import tune

    started = time.time()
    time.sleep(HOLD_S)
    assigned = ray.get_runtime_context().get_assigned_resources()
    gpu_ids = [str(gpu) for gpu in ray.get_gpu_ids()]
    tune.report({"started": started, "ended": time.time(), "gpu": assigned.get("GPU", 0.0), "gpu_ids": gpu_ids})


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans running at one moment."""
    return max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)


def test_half_gpu_trials_run_two_at_a_time_on_one_gpu(ray_with_one_gpu, tmp_path: Path) -> None:
    from ray import tune

    assert trial_resources(HALF_GPU) == {"cpu": 1, "gpu": 0.5}
    tuner = tune.Tuner(
        tune.with_resources(hold_a_share, trial_resources(HALF_GPU)),
        param_space={"index": tune.grid_search(list(range(TRIALS)))},
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    results = [result.metrics for result in tuner.fit()]
    assert len(results) == TRIALS and all(result["gpu"] == 0.5 for result in results)
    assert all(result["gpu_ids"] == ["0"] for result in results)  # the same physical GPU, shared
    spans = [(result["started"], result["ended"]) for result in results]
    assert most_at_once(spans) == 2, spans  # 4 CPUs would allow 4; half a GPU each allows 2


def test_most_at_once_counts_overlapping_spans() -> None:
    assert most_at_once([(0, 2), (1, 3), (2, 4), (3, 5)]) == 2
    assert most_at_once([(0, 1), (1, 2)]) == 1
    assert most_at_once([(0, 5), (1, 5), (2, 5)]) == 3


def test_a_trial_given_a_gpu_that_cuda_cannot_see_trains_on_the_cpu(ray_with_one_gpu) -> None:
    """Ray sets ``CUDA_VISIBLE_DEVICES`` for the trial, but torch finds no device: the trial's own Lightning trainer
    (``mm1core.train.build_trainer``) picks the CPU instead of failing."""
    import ray

    @ray.remote(num_cpus=1, num_gpus=0.5)
    def trainer_placement() -> tuple[str | None, bool, str]:
        import torch

        from mm1core.config import TrainConfig
        from mm1core.train import build_trainer

        trainer = build_trainer(TrainConfig(), callbacks=[], progress_bar=False)
        return os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.is_available(), type(trainer.accelerator).__name__

    visible, cuda, accelerator = ray.get(trainer_placement.remote(), timeout=120)
    assert visible == "0"  # Ray's share of GPU 0
    if cuda:
        pytest.skip("this machine has a CUDA device: Lightning uses it")
    assert accelerator == "CPUAccelerator"
