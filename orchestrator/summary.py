"""Per-trial tables read back from MLflow: the end-of-sweep summary and ``mm1 sweep status``."""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.entities import Run

from mm1core.runnames import ERROR, TRIAL_KEY
from orchestrator.expand import Trial

_PREFERENCE = {"FINISHED": 3, "RUNNING": 2, "FAILED": 1, "KILLED": 0}


def latest_runs(runs: list[Run]) -> dict[str, Run]:
    """trial_key -> its most telling run: a FINISHED one if any, else the newest (runs come newest first)."""
    chosen: dict[str, Run] = {}
    for run in runs:
        key = run.data.tags.get(TRIAL_KEY)
        if key is None:
            continue
        best = chosen.get(key)
        if best is None or _PREFERENCE.get(run.info.status, 0) > _PREFERENCE.get(best.info.status, 0):
            chosen[key] = run
    return chosen


def trial_table(trials: list[Trial], runs: list[Run]) -> pd.DataFrame:
    """One row per planned trial: varied values, MLflow status, final train loss, eval metrics, times."""
    by_key = latest_runs(runs)
    rows = [_row(trial, by_key.get(trial.key)) for trial in trials]
    table = pd.DataFrame(rows)
    metric_columns = sorted(c for c in table.columns if c.startswith("eval/"))
    tail = ("steps", "train_s", "trial_key", "error")
    leading = [c for c in table.columns if c not in metric_columns and c not in tail]
    trailing = [c for c in tail if c in table.columns]
    return table[leading + metric_columns + trailing]


def _row(trial: Trial, run: Run | None) -> dict[str, Any]:
    row: dict[str, Any] = {"#": trial.index + 1}
    row.update({_column(path): value for path, value in trial.varied.items()})
    row["status"] = run.info.status if run else "PENDING"
    metrics = run.data.metrics if run else {}
    row["train/loss"] = metrics.get("train/loss")
    row.update(
        {
            name: value
            for name, value in metrics.items()
            if name.startswith("eval/avg/") or name in ("eval/textcore", "eval/loss", "eval/sft/avg", "eval/sft/loss")
        }
    )
    row["steps"] = metrics.get("perf/steps")
    row["train_s"] = metrics.get("perf/train_seconds")
    row["trial_key"] = trial.key
    if run and run.data.tags.get(ERROR):
        row["error"] = run.data.tags[ERROR][:80]
    return row


def _column(path: str) -> str:
    """A varied path's column: its last name, ``init.`` kept for what the trial's source varied."""
    name = path.rsplit(".", 1)[-1]
    return f"init.{name}" if path.startswith("init.") else name


def format_table(table: pd.DataFrame) -> str:
    shown = table.apply(
        lambda column: column.map(lambda v: "-" if v is None else v) if column.dtype == object else column
    )
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")


def overhead_line(table: pd.DataFrame, ran_keys: set[str], wall_seconds: float, concurrency: int | None) -> str:
    """Sweep wall time against summed training time.

    One trial at a time: per-trial overhead = (wall - summed training) / trials run. Trials at once: the summed
    training time may exceed the wall time, so the line gives the parallel speed-up (summed training / wall) and
    the overhead against the ``c`` slots in use, (wall x c - summed training) / trials (slot time not spent
    training: startup, idle slots, evaluation). An overhead is shown only when it is not negative (the two clocks
    are read in different processes); unknown concurrency (as many as resources allow) gives the speed-up alone.
    """
    ran = len(ran_keys)
    trained = float(table.loc[table["trial_key"].isin(ran_keys), "train_s"].dropna().sum())
    slots = min(concurrency, ran) if concurrency else None
    if slots == 1 or ran <= 1:
        line = f"sweep wall time {wall_seconds:.1f} s for {ran} trial(s); summed training time {trained:.1f} s"
        return line + _overhead(wall_seconds, trained, ran, "wall - summed training, per trial")
    at_once = f", {slots} at once" if slots else ""
    line = f"sweep wall time {wall_seconds:.1f} s for {ran} trial(s){at_once}; summed training time {trained:.1f} s"
    if wall_seconds > 0:
        line += f"; parallel speed-up {trained / wall_seconds:.2f}x (summed training / wall)"
    if slots:
        line += _overhead(wall_seconds * slots, trained, ran, f"wall x {slots} - summed training, per trial")
    return line


def _overhead(slot_seconds: float, trained: float, ran: int, how: str) -> str:
    per_trial = (slot_seconds - trained) / ran if ran else 0.0
    return f"; per-trial overhead {per_trial:.1f} s ({how})" if per_trial >= 0 else ""


def compute_line(table: pd.DataFrame, trials: list[Trial], ran_keys: set[str], stopped: list[str]) -> str:
    """What early stopping saved: trial-steps run against the trials' ``train.max_steps``, over the trials run."""
    planned = sum(t.config.train.max_steps for t in trials if t.key in ran_keys)
    used = float(table.loc[table["trial_key"].isin(ran_keys), "steps"].dropna().sum())
    share = used / planned if planned else 0.0
    return (
        f"early stopping: {len(stopped)} of {len(ran_keys)} trial(s) stopped by the scheduler; "
        f"compute {used:,.0f} of {planned:,} trial-steps ({share:.0%})"
    )
