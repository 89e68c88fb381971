"""Per-trial tables read back from MLflow: the end-of-sweep summary and ``mm1 sweep status``."""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.entities import Run

from orchestrator.expand import Trial
from orchestrator.tracking import TRIAL_KEY

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
    if run and run.data.tags.get("mm1.error"):
        row["error"] = run.data.tags["mm1.error"][:80]
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

    Overhead per trial = (wall - summed training) / trials run; with trials overlapping this can be negative,
    so the line also gives it against an ideal packing, (wall - summed training / concurrency) / trials.
    """
    ran = len(ran_keys)
    trained = float(table.loc[table["trial_key"].isin(ran_keys), "train_s"].dropna().sum())
    per_trial = (wall_seconds - trained) / ran if ran else 0.0
    line = (
        f"sweep wall time {wall_seconds:.1f} s for {ran} trial(s); summed training time {trained:.1f} s; "
        f"per-trial overhead {per_trial:+.1f} s (wall - summed training, per trial)"
    )
    if concurrency and concurrency > 1:
        packed = (wall_seconds - trained / min(concurrency, ran)) / ran
        line += f"; {packed:+.1f} s against {min(concurrency, ran)} trials at once"
    return line


def compute_line(table: pd.DataFrame, trials: list[Trial], ran_keys: set[str], stopped: list[str]) -> str:
    """What early stopping saved: trial-steps run against the trials' ``train.max_steps``, over the trials run."""
    planned = sum(t.config.train.max_steps for t in trials if t.key in ran_keys)
    used = float(table.loc[table["trial_key"].isin(ran_keys), "steps"].dropna().sum())
    share = used / planned if planned else 0.0
    return (
        f"early stopping: {len(stopped)} of {len(ran_keys)} trial(s) stopped by the scheduler; "
        f"compute {used:,.0f} of {planned:,} trial-steps ({share:.0%})"
    )
