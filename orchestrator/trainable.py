"""The Ray Tune function trainable: one trial = one call of ``mm1core.train.train_trial``.

Runs inside a (re-used) Ray worker. It never talks to MLflow: metrics travel to the driver as Tune
results, in bursts, and the driver is the single MLflow writer (see ``orchestrator.tracking``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ray import tune

if TYPE_CHECKING:  # mm1core (and Lightning) load inside the trial, not in the driver
    from mm1core.train import DataParallel, MetricSink, TrialResult

# Keys of a reported result (besides metric names themselves).
HISTORY, STEP, FINAL, ERROR = "mm1/history", "step", "mm1/final", "mm1/error"
CHECKPOINT, PREDICTIONS = "mm1/checkpoint", "mm1/predictions"
CHECKPOINTS = "mm1/checkpoints"  # train.save_at_steps: {step: path} of the models saved along the way
NODE = "mm1/node"  # the Ray node the trial runs on (tag mm1.node: where a cluster put it)
# A data-parallel trial's Ray Train worker group (placement group id, hex), reported by rank 0: the driver removes
# it when the trial ends, since a trial stopped by the scheduler is killed before Ray Train can release it.
WORKER_GROUP = "mm1/worker_group"
PROFILE = "mm1/profile"  # where a trial with train.profile wrote its profiler trace
REPORT_EVERY_S = 10.0  # the longest a trial holds back its step metrics (TuneSink)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


class TuneSink:
    """A ``mm1core.train.MetricSink`` that reports bursts of step metrics to Tune.

    A Tune function trial waits at each report until the driver has taken the result (and written it to MLflow),
    so bursts are held back and sent together at most every ``every_s`` seconds; a burst goes at once when it
    ends at a resume-state step (``state_every`` steps, so what a resumed trial skips was reported), carries eval
    metrics (the scheduler decides on them) or extra keys (the final result, an error)."""

    def __init__(self, every_s: float = REPORT_EVERY_S, state_every: int | None = None) -> None:
        self.every_s, self.state_every = every_s, state_every
        self._history: list[tuple[int, dict[str, float]]] = []
        self._step = 0
        self._sent = time.monotonic()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._history.append((step, {name: float(value) for name, value in metrics.items()}))
        self._step = max(self._step, step)

    def flush(self, **extra: Any) -> None:
        if not self._history and not extra:
            return
        if not extra and not self._due():
            return
        latest: dict[str, float] = {}
        for _, values in self._history:
            latest.update(values)  # the scheduler sees each metric's newest value
        tune.report({**latest, STEP: self._step, HISTORY: self._history, NODE: _node_id(), **extra})
        self._history = []
        self._sent = time.monotonic()

    def _due(self) -> bool:
        if time.monotonic() - self._sent >= self.every_s:
            return True
        if self.state_every and self._step % self.state_every == 0:
            return True
        return any(name.startswith("eval/") for name in self._history[-1][1])


def tune_trial(config: dict[str, Any]) -> None:
    """Trains and evaluates one trial.

    ``config["trial_payload"]`` = ``{"trial": <resolved TrialConfig dict>, "threads": int, "key": trial_key,
    "checkpoint": where the trained model goes, "state_dir": where the resume state lives while it trains}``, and
    for a data-parallel trial ``"workers"`` (W > 1), ``"cpus_per_worker"``, ``"gpus_per_worker"``: then W Ray Train
    workers train it and this function relays their results (``orchestrator.distributed``); ``threads`` is per worker.
    """
    payload = config["trial_payload"]
    sink = TuneSink(state_every=payload["trial"]["train"].get("checkpoint_every_n_steps"))
    if payload.get("workers", 1) > 1:
        from orchestrator.distributed import run_distributed

        return run_distributed(payload, sink)
    try:
        result = train_payload(payload, sink)
    except Exception as exc:
        # The driver records this one-line cause in MLflow's mm1.error before Tune marks the trial ERROR.
        sink.flush(**error_report(exc))
        raise
    sink.flush(**final_report(result))


def train_payload(
    payload: Mapping[str, Any], sink: MetricSink | None, parallel: DataParallel | None = None
) -> TrialResult:
    """``mm1core.train.train_trial`` on the payload's trial (a ``TrialResult``); ``parallel`` for a DDP rank."""
    from mm1core.config import TrialConfig
    from mm1core.train import train_trial

    return train_trial(
        TrialConfig.model_validate(payload["trial"]),
        sink=sink,
        progress_bar=False,
        threads=payload["threads"],
        checkpoint=payload.get("checkpoint"),
        state_dir=payload.get("state_dir"),
        parallel=parallel,
    )


def error_report(exc: BaseException) -> dict[str, str]:
    """The extra keys of a failed trial's last result: its cause on one line."""
    return {ERROR: f"{type(exc).__name__}: {exc}"}


def final_report(result: TrialResult) -> dict[str, Any]:
    """The extra keys of a finished trial's last result."""
    return {
        FINAL: 1.0,
        CHECKPOINT: result.checkpoint,
        CHECKPOINTS: json.dumps({str(step): path for step, path in result.checkpoints.items()}),
        PREDICTIONS: result.predictions,
        PROFILE: result.profile,
        "perf/train_seconds": result.train_seconds,
        "perf/eval_seconds": result.eval_seconds,
    }
