"""The pieces of a multi-worker trial that need no Ray Train: what it reserves, how many run at once, the layout
check, the relay of rank 0's bursts (on a plain queue) into the trial's sink, and the removal of a worker group's
placement group (on a local Ray)."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from orchestrator.distributed import (
    QueueSink,
    Relay,
    check_layout,
    concurrent_trials,
    release_workers,
    root_cause,
    run_distributed,
    trial_resources,
)
from orchestrator.payload import ERROR, FINAL, WORKER_GROUP
from orchestrator.spec import Resources


class RecordingSink:
    def __init__(self) -> None:
        self.reports: list[tuple[list[tuple[int, dict[str, float]]], dict[str, Any]]] = []
        self.pending: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.pending.append((step, dict(metrics)))

    def flush(self, **extra: Any) -> None:
        self.reports.append((self.pending, extra))
        self.pending = []


def test_one_worker_keeps_the_trials_own_resources() -> None:
    resources = Resources(cpus_per_trial=2, gpus_per_trial=0.5)
    assert trial_resources(resources) == {"cpu": 2, "gpu": 0.5}
    assert concurrent_trials(resources, {"CPU": 2.0}, requested=None) is None


def test_several_workers_reserve_nothing_in_tune() -> None:
    resources = Resources(workers_per_trial=2, cpus_per_trial=1, gpus_per_trial=1)
    assert trial_resources(resources) == {"cpu": 0, "memory": 1}  # Ray Train reserves the workers


@pytest.mark.parametrize(
    ("resources", "cluster", "requested", "expected"),
    [
        (Resources(workers_per_trial=2, cpus_per_trial=1), {"CPU": 2.0}, None, 1),
        (Resources(workers_per_trial=2, cpus_per_trial=1), {"CPU": 16.0}, None, 8),
        (Resources(workers_per_trial=2, cpus_per_trial=1), {"CPU": 16.0}, 3, 3),
        (Resources(workers_per_trial=2, cpus_per_trial=2, gpus_per_trial=1), {"CPU": 16.0, "GPU": 2.0}, None, 1),
        (Resources(workers_per_trial=4, cpus_per_trial=1), {"CPU": 2.0}, None, 1),  # Ray Train says it cannot fit
    ],
    ids=["2-cores", "16-cores", "requested-fewer", "gpus-bound", "too-big"],
)
def test_concurrency_is_capped_at_the_trials_whose_workers_fit(
    resources: Resources, cluster: dict[str, float], requested: int | None, expected: int
) -> None:
    assert concurrent_trials(resources, cluster, requested) == expected


def test_layout_problems_are_one_line_errors() -> None:
    check_layout(8, 2, 0)
    check_layout(8, 4, 1)
    with pytest.raises(ValueError, match=r"^train.batch_size 6 is not divisible by resources.workers_per_trial 4$"):
        check_layout(6, 4, 0)
    with pytest.raises(ValueError, match="need a whole GPU each"):
        check_layout(8, 2, 0.5)


def test_an_indivisible_batch_is_reported_before_any_worker_starts() -> None:
    sink = RecordingSink()
    payload = {"trial": {"train": {"batch_size": 6}}, "workers": 4, "gpus_per_worker": 0}
    with pytest.raises(ValueError):
        run_distributed(payload, sink)
    assert sink.reports == [
        ([], {ERROR: "ValueError: train.batch_size 6 is not divisible by resources.workers_per_trial 4"})
    ]


def test_the_relay_replays_bursts_in_order_and_only_the_first_error() -> None:
    channel: queue.Queue = queue.Queue()
    rank_zero = QueueSink(channel)
    sink = RecordingSink()
    with Relay(sink, channel):
        rank_zero.log_metrics({"train/loss": 2.5}, step=1)
        rank_zero.log_metrics({"train/loss": 2.0}, step=2)
        rank_zero.flush()
        rank_zero.flush()  # nothing new: nothing sent
        rank_zero.flush(**{FINAL: 1.0})
        QueueSink(channel).flush(**{ERROR: "NonFiniteLoss: train/loss is nan at step 3"})  # the cause
        QueueSink(channel).flush(**{ERROR: "DistBackendError: connection closed by peer"})  # its echo
    assert sink.reports == [
        ([(1, {"train/loss": 2.5}), (2, {"train/loss": 2.0})], {}),
        ([], {FINAL: 1.0}),
        ([], {ERROR: "NonFiniteLoss: train/loss is nan at step 3"}),
    ]


def test_the_worker_group_goes_with_the_first_burst_only() -> None:
    channel: queue.Queue = queue.Queue()
    rank_zero = QueueSink(channel, {WORKER_GROUP: "ab12"})
    rank_zero.flush()  # nothing to send: the group waits for a burst (a result without metrics fails Tune's check)
    rank_zero.log_metrics({"train/loss": 2.5}, step=1)
    rank_zero.flush()
    rank_zero.log_metrics({"train/loss": 2.0}, step=2)
    rank_zero.flush(**{FINAL: 1.0})
    assert [channel.get_nowait() for _ in range(channel.qsize())] == [
        ([(1, {"train/loss": 2.5})], {WORKER_GROUP: "ab12"}),
        ([(2, {"train/loss": 2.0})], {FINAL: 1.0}),
    ]


def test_the_root_cause_of_a_worker_group_failure_is_the_lowest_failed_ranks() -> None:
    from ray.train import WorkerGroupError

    cause = FloatingPointError("nan")
    error = WorkerGroupError("rank 1 and 0 failed", {1: RuntimeError("peer gone"), 0: cause})
    assert root_cause(error) is cause
    assert root_cause(cause) is cause


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


def _cpus_free(expected: float, within_s: float = 10.0) -> bool:
    """Whether Ray shows ``expected`` CPUs available (a removal frees them asynchronously)."""
    import ray

    deadline = time.monotonic() + within_s
    while ray.available_resources().get("CPU", 0.0) != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.slow  # a Ray start-up
def test_releasing_a_worker_group_frees_its_cpus_once(local_ray, caplog: pytest.LogCaptureFixture) -> None:
    import ray
    from ray.util.placement_group import placement_group

    group = placement_group([{"CPU": 1}, {"CPU": 1}])  # what Ray Train reserves for 2 workers of 1 CPU
    ray.get(group.ready(), timeout=30)
    assert _cpus_free(0.0)
    release_workers(group.id.hex())
    assert ray.util.placement_group_table(group)["state"] == "REMOVED"
    assert _cpus_free(2.0)
    with caplog.at_level(logging.DEBUG, logger="orchestrator.distributed"):
        release_workers(group.id.hex())  # e.g. Ray Train removed it at the end of a normal fit
    assert "already removed" in caplog.text and "could not remove" not in caplog.text
    assert _cpus_free(2.0)


@pytest.mark.slow
def test_releasing_an_unknown_or_malformed_group_is_harmless(local_ray, caplog: pytest.LogCaptureFixture) -> None:
    import ray

    release_workers(ray.PlacementGroupID.from_random().hex())  # never existed: nothing to do
    release_workers("not-a-group")  # logged, never raised into the driver's callback
    assert "could not remove worker group not-a-group" in caplog.text
    assert _cpus_free(2.0)
