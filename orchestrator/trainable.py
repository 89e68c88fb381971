"""The Ray Tune function trainable: one trial = one call of ``mm1core.train.train_trial``.

Runs inside a (re-used) Ray worker. It never talks to MLflow: metrics travel to the driver as Tune
results, in bursts, and the driver is the single MLflow writer (see ``orchestrator.tracking``). The payload and
the keys of a result are ``orchestrator.payload``'s, shared with the data-parallel ranks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ray import tune

from orchestrator.distributed import run_distributed
from orchestrator.payload import HISTORY, NODE, STEP, error_report, final_report, train_payload

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
        return run_distributed(payload, sink)
    try:
        result = train_payload(payload, sink)
    except Exception as exc:
        # The driver records this one-line cause in MLflow's mm1.error before Tune marks the trial ERROR.
        sink.flush(**error_report(exc))
        raise
    sink.flush(**final_report(result))
