"""The Ray Tune function trainable: one trial = one call of ``mm1core.train.train_trial``.

Runs inside a (re-used) Ray worker. It never talks to MLflow: metrics travel to the driver as Tune
results, in bursts, and the driver is the single MLflow writer (see ``orchestrator.tracking``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import tune

# Keys of a reported result (besides metric names themselves).
HISTORY, STEP, FINAL, ERROR = "mm1/history", "step", "mm1/final", "mm1/error"
CHECKPOINT, PREDICTIONS = "mm1/checkpoint", "mm1/predictions"
NODE = "mm1/node"  # the Ray node the trial runs on (tag mm1.node: where a cluster put it)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


class TuneSink:
    """A ``mm1core.train.MetricSink`` that reports each burst of step metrics to Tune on ``flush``."""

    def __init__(self) -> None:
        self._history: list[tuple[int, dict[str, float]]] = []
        self._step = 0

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._history.append((step, {name: float(value) for name, value in metrics.items()}))
        self._step = max(self._step, step)

    def flush(self, **extra: Any) -> None:
        if not self._history and not extra:
            return
        latest: dict[str, float] = {}
        for _, values in self._history:
            latest.update(values)  # the scheduler sees each metric's newest value
        tune.report({**latest, STEP: self._step, HISTORY: self._history, NODE: _node_id(), **extra})
        self._history = []


def tune_trial(config: dict[str, Any]) -> None:
    """Trains and evaluates one trial.

    ``config["trial_payload"]`` = ``{"trial": <resolved TrialConfig dict>, "threads": int, "key": trial_key,
    "checkpoint": where the trained model goes, "state_dir": where the resume state lives while it trains}``.
    """
    from mm1core.config import TrialConfig
    from mm1core.train import train_trial

    payload = config["trial_payload"]
    trial = TrialConfig.model_validate(payload["trial"])
    sink = TuneSink()
    try:
        result = train_trial(
            trial,
            sink=sink,
            progress_bar=False,
            threads=payload["threads"],
            checkpoint=payload.get("checkpoint"),
            state_dir=payload.get("state_dir"),
        )
    except Exception as exc:
        # The driver records this one-line cause in MLflow's mm1.error before Tune marks the trial ERROR.
        sink.flush(**{ERROR: f"{type(exc).__name__}: {exc}"})
        raise
    sink.flush(
        **{
            FINAL: 1.0,
            CHECKPOINT: result.checkpoint,
            PREDICTIONS: result.predictions,
            "perf/train_seconds": result.train_seconds,
            "perf/eval_seconds": result.eval_seconds,
        }
    )
