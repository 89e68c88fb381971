"""One trial on W data-parallel workers: a Tune function that drives a Ray Train ``TorchTrainer``.

Under Ray Train V2 a Trainer passed to ``Tuner`` is deprecated; the supported shape is a Tune function that builds
and fits the trainer (DESIGN.md, "Pitfalls of the stack"). Each of the W workers runs ``mm1core.train.train_trial``
as one rank of a Lightning DDP run that Ray sets up (``RayDDPStrategy``, ``RayLightningEnvironment``; gloo on CPU,
nccl on GPU). ``train.batch_size`` stays the global batch: rank r trains on its ``B / W`` rows of each one, and the
loss is weighted so a step equals the single-worker step (``mm1core.module.data_parallel_loss``).

Results: rank 0's sink puts each burst on a Ray queue and a thread of the Tune function replays it into the trial's
own sink (``TuneSink``), so the driver's ``TrialLogger`` sees the same results as from one worker (plus
``perf/workers`` in the final one). Not ``ray.train.report`` with ``TuneReportCallback``: Train V2 treats a report as
a collective that every rank must make (rank 0's evaluations and final metrics would need idle twins on the other
ranks), and its controller takes one report per status poll (every 2 s), which would stall a trial that logs more
often.

Resources: Ray Train reserves the workers' own placement group, so the Tune trial itself holds nothing
(``trial_resources``) and ``concurrent_trials`` keeps Tune from starting more trials than the workers fit.

Cleanup: a trial the scheduler stops (or that dies) is killed with its Ray Train controller, but the workers'
placement group outlives it: the controller, not the job or a detached actor, created it, and Ray Train's own
``PlacementGroupCleaner`` asks the state API (the dashboard) whether the controller lives, which a local run without a
dashboard lacks. So rank 0 reports the group's id with its first burst (``WORKER_GROUP``) and the driver removes it
when the trial ends (``release_workers``); otherwise the leaked workers hold their CPUs and later trials never start.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Mapping
from queue import Empty
from typing import TYPE_CHECKING, Any

from orchestrator.payload import ERROR, WORKER_GROUP, error_report, final_report, train_payload

if TYPE_CHECKING:
    from orchestrator.spec import Resources

RELAY_POLL_S = 0.5  # how often the relay looks again at an empty queue

log = logging.getLogger(__name__)


def trial_resources(resources: Resources) -> dict[str, float]:
    """What ``tune.with_resources`` reserves for one trial. One worker: the trial process trains. W > 1 workers:
    the Tune function only waits and relays, and reserving the workers' CPUs here as well would count them twice
    (on 2 cores, 2 workers of 1 CPU would never start); a placement group bundle cannot be empty, hence 1 byte."""
    if resources.workers_per_trial == 1:
        return {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}
    return {"cpu": 0, "memory": 1}


def concurrent_trials(resources: Resources, cluster: Mapping[str, float], requested: int | None) -> int | None:
    """Trials at once: ``requested`` (``None``: as many as resources allow), capped for W > 1 workers at how many
    trials' workers ``cluster`` (``ray.cluster_resources()``) holds, since their Tune functions reserve nothing and
    Tune alone would start every trial at once, each then waiting for its workers."""
    if resources.workers_per_trial == 1:
        return requested
    workers = resources.workers_per_trial
    fits = [cluster.get("CPU", 0.0) // (workers * resources.cpus_per_trial)]
    if resources.gpus_per_trial:
        fits.append(cluster.get("GPU", 0.0) // (workers * resources.gpus_per_trial))
    limit = max(1, int(min(fits)))
    return min(requested, limit) if requested else limit


def check_layout(batch_size: int, workers: int, gpus_per_worker: float) -> None:
    """Raises ``ValueError`` (one line) for a global batch the workers cannot share equally, or workers sharing a
    GPU (nccl gives each rank its own device)."""
    if batch_size % workers:
        raise ValueError(f"train.batch_size {batch_size} is not divisible by resources.workers_per_trial {workers}")
    if 0 < gpus_per_worker < 1:
        raise ValueError(f"gpus_per_trial {gpus_per_worker:g}: data-parallel workers need a whole GPU each")


class QueueSink:
    """Rank 0's ``MetricSink``: each burst, with ``flush``'s extra keys, goes on the queue the Tune function relays.
    ``first``: extra keys sent once, with the first burst (not alone: a Tune result without the scheduler's metric
    fails Tune's metric check)."""

    def __init__(self, queue: Any, first: Mapping[str, Any] | None = None) -> None:
        self.queue = queue
        self.history: list[tuple[int, dict[str, float]]] = []
        self.first = dict(first or {})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.history.append((step, {name: float(value) for name, value in metrics.items()}))

    def flush(self, **extra: Any) -> None:
        if not self.history and not extra:
            return
        self.queue.put((self.history, {**self.first, **extra}))
        self.history, self.first = [], {}


class Relay:
    """Replays the bursts put on its queue into ``sink`` from a thread of the Tune function, while that waits in
    ``TorchTrainer.fit``; a context manager, drained on exit. Only the first error is passed on: it is the cause (a
    peer's broken collective follows). ``queue``: a Ray queue of its own when not given."""

    def __init__(self, sink: Any, queue: Any = None) -> None:
        self.sink, self.queue, self.owns_queue = sink, queue, queue is None
        self.error_sent = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, name="mm1-relay", daemon=True)

    def __enter__(self) -> Relay:
        if self.owns_queue:
            from ray.util.queue import Queue

            self.queue = Queue(actor_options={"num_cpus": 0})  # it must not wait for a CPU the workers hold
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        self.thread.join()
        if self.owns_queue:
            self.queue.shutdown()

    def run(self) -> None:
        while True:
            try:
                history, extra = self.queue.get(timeout=RELAY_POLL_S)
            except Empty:  # Ray's queue raises a subclass
                if self.done.is_set():
                    return  # every put happened before fit returned: the queue is drained
                continue
            self.replay(history, extra)

    def replay(self, history: list[tuple[int, dict[str, float]]], extra: dict[str, Any]) -> None:
        if ERROR in extra:
            if self.error_sent:
                return
            self.error_sent = True
        for step, values in history:
            self.sink.log_metrics(values, step)
        self.sink.flush(**extra)


def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: this rank's part of the trial; rank 0 reports through the queue, any rank that
    fails sends its error first."""
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer

    from mm1core.train import DataParallel

    context = ray.train.get_context()
    rank_zero = context.get_world_rank() == 0
    sink = QueueSink(config["queue"], {WORKER_GROUP: worker_group_id()} if rank_zero else None)
    # A rank whose rows hold no image leaves the encoder and connector out of its graph: DDP must look for that.
    strategy = RayDDPStrategy(find_unused_parameters=True)
    parallel = DataParallel(strategy, [RayLightningEnvironment()], prepare_trainer)
    try:
        result = train_payload(config["payload"], sink if rank_zero else None, parallel)
    except Exception as exc:
        sink.flush(**error_report(exc))
        raise
    if rank_zero:
        sink.flush(**final_report(result), **{"perf/workers": context.get_world_size()})


def worker_group_id() -> str | None:
    """The placement group (hex id) of this Ray Train worker's group: Ray Train V2 (2.60, ``WorkerGroup``) creates
    one per worker group and starts each worker in one of its bundles; ``None`` outside a placement group."""
    from ray.util import get_current_placement_group

    group = get_current_placement_group()
    return group.id.hex() if group is not None else None


def release_workers(group_hex: str) -> None:
    """Removes the worker group's placement group ``group_hex`` (which kills any worker still in it), from the driver.
    Idempotent: a group already removed (by Ray Train at the end of a normal fit, or by an earlier call) or unknown is
    left alone. Never raises: a failed cleanup is logged, and must not end the sweep."""
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    try:
        group = PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_hex)))
        state = ray.util.placement_group_table(group).get("state")  # {} for an id the cluster never had
        if state in (None, "REMOVED"):
            log.debug("worker group %s already removed (state %s)", group_hex, state)
            return
        remove_placement_group(group)
    except Exception as exc:  # noqa: BLE001 - a leak is better than a failed sweep
        log.warning("could not remove worker group %s: %s", group_hex, exc)


def run_distributed(payload: Mapping[str, Any], sink: Any) -> None:
    """Trains the payload's trial (see ``orchestrator.trainable.tune_trial``) on ``payload["workers"]`` Ray Train
    workers of ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs, relaying rank 0's results into ``sink`` (a
    ``TuneSink``, or any object with its ``log_metrics``/``flush(**extra)``). Raises what failed, after sending it."""
    relay = Relay(sink)
    try:
        check_layout(payload["trial"]["train"]["batch_size"], payload["workers"], payload["gpus_per_worker"])
        with relay:
            fit(payload, relay.queue)
    except Exception as exc:
        if not relay.error_sent:  # failed before a worker could say why, or killed by a peer's failure
            sink.flush(**error_report(root_cause(exc)))
        raise


def fit(payload: Mapping[str, Any], queue: Any) -> None:
    """Runs the ``TorchTrainer``: no retries of its own (a Tune retry starts it again and resumes from the payload's
    ``state_dir``) and a scratch storage directory (it keeps no checkpoints: the trial saves its own)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    workers, cpus, gpus = payload["workers"], payload["cpus_per_worker"], payload["gpus_per_worker"]
    per_worker = {"CPU": cpus, "GPU": gpus} if gpus else {"CPU": cpus}
    with tempfile.TemporaryDirectory(prefix="mm1-train-") as storage:
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={"payload": dict(payload), "queue": queue},
            torch_config=TorchConfig(backend="nccl" if gpus else "gloo"),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=bool(gpus), resources_per_worker=per_worker),
            run_config=RunConfig(
                name=f"mm1-{payload['key']}", storage_path=storage, failure_config=FailureConfig(max_failures=0)
            ),
        )
        trainer.fit()


def root_cause(error: BaseException) -> BaseException:
    """The exception behind a Ray Train failure: the lowest failed rank's, unwrapped from Ray's task error."""
    failures = getattr(error, "worker_failures", None) or {}
    cause = failures[min(failures)] if failures else getattr(error, "controller_failure", error)
    return getattr(cause, "cause", None) or cause
