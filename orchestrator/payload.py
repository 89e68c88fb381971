"""What one trial runs inside a Ray worker and what it reports back: the payload the driver sends, the keys of a
reported result, and ``train_payload``, the call of ``mm1core.train.train_trial`` on a payload.

Shared by the Tune function (``orchestrator.trainable``: one worker) and the data-parallel ranks
(``orchestrator.distributed``: W workers), which both report through these keys; the driver
(``orchestrator.run``) reads them back. Torch-free: mm1core (and Lightning) load inside the trial.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
