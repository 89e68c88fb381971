"""MLflow, laid out as DESIGN.md promises: a parent run per sweep, a nested child run per trial.

Only the driver writes (one writer: no sqlite lock contention between trials). Trials stream their
metrics to the driver through Ray Tune results; ``TrialLogger`` turns them into batched MLflow writes. The names
of the layout (tags, roles) are ``mm1core.runnames``, shared with the reader, ``dashboards.runs``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.tracking import MlflowClient

from dashboards.runs import search_all_runs
from mm1core.cli_common import resolve_tracking_uri as resolve_tracking_uri  # re-exported (orchestrator.lineage)
from mm1core.cli_common import sqlite_path
from mm1core.cli_common import store_exists as store_exists  # re-exported (orchestrator.lineage)
from mm1core.runnames import (
    ATTEMPTS,
    CHECKPOINT_TAG,
    CHECKPOINTS_TAG,
    EARLIER_ERROR,
    ERROR,
    INIT_FROM_RUN,
    NOTE,
    PARENT_RUN_ID,
    PROFILE_TAG,
    ROLE,
    SWEEP,
    SWEEP_ROLE,
    TRIAL_KEY,
    TRIAL_ROLE,
    VARIED_TAG,
)
from mm1core.runnames import STOPPED_EARLY as STOPPED_EARLY  # re-exported (orchestrator.lineage)

_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch call


class PlannedTrial(Protocol):
    """What the tracker reads of an expanded trial (``orchestrator.expand.Trial``)."""

    @property
    def key(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def config(self) -> Any: ...  # the resolved TrialConfig
    @property
    def varied(self) -> dict[str, Any]: ...
    @property
    def derived(self) -> dict[str, Any]: ...


class Tracker:
    """The sweep's view of one MLflow tracking store."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    def log_outputs(
        self,
        run_id: str,
        checkpoint: str | None,
        predictions: list[dict[str, Any]],
        profile: str | None = None,
        checkpoints: Mapping[str, str] | None = None,
    ) -> None:
        """A finished trial's checkpoint path (tag ``mm1.checkpoint``; those of ``train.save_at_steps`` in
        ``mm1.checkpoints``, JSON by step), its sample predictions (artifact
        ``predictions.json``, an MLflow table) and its profiler trace (artifacts under ``profile/``; where the trace
        is on another machine than this one, its path in tag ``mm1.profile``)."""
        if checkpoint:
            self.client.set_tag(run_id, CHECKPOINT_TAG, checkpoint)
        if checkpoints:
            self.client.set_tag(run_id, CHECKPOINTS_TAG, json.dumps(dict(checkpoints), sort_keys=True))
        if predictions:
            self.client.log_table(run_id, prediction_table(predictions), "predictions.json")
        if profile:
            trace = Path(profile)
            if trace.is_dir():
                self.client.log_artifacts(run_id, str(trace), "profile")
            elif trace.is_file():
                self.client.log_artifact(run_id, str(trace), "profile")
            else:
                self.client.set_tag(run_id, PROFILE_TAG, profile)

    # ------------------------------------------------------------------ experiments and runs
    def experiment_id(self, name: str, create: bool = True, description: str = "") -> str | None:
        """The id of experiment ``name``; created when missing (and ``create``), with ``description`` as the
        description the MLflow UI shows. An existing experiment keeps its own."""
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        if not create:
            return None
        db = sqlite_path(self.uri)
        location = (db.parent / "mlartifacts").as_uri() if db else None
        tags = {NOTE: description} if description else None
        return self.client.create_experiment(name, artifact_location=location, tags=tags)

    def sweep_run(self, experiment_id: str, sweep: str) -> Run | None:
        runs = self._search(experiment_id, f"tags.`{ROLE}` = '{SWEEP_ROLE}' AND tags.`{SWEEP}` = '{_quote(sweep)}'")
        return runs[0] if runs else None

    def trial_runs(self, experiment_id: str, sweep: str) -> list[Run]:
        """Every trial run of the sweep, newest first."""
        return self._search(experiment_id, f"tags.`{ROLE}` = '{TRIAL_ROLE}' AND tags.`{SWEEP}` = '{_quote(sweep)}'")

    def _search(self, experiment_id: str, query: str) -> list[Run]:
        return search_all_runs(self.client, experiment_id, query)

    def start_sweep_run(self, experiment_id: str, sweep: str, spec_text: str, plan: list[dict[str, Any]]) -> str:
        """Re-uses the sweep's parent run when there is one, so re-runs gather under one parent."""
        existing = self.sweep_run(experiment_id, sweep)
        if existing is not None:
            run_id = existing.info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run = self.client.create_run(experiment_id, run_name=sweep, tags={ROLE: SWEEP_ROLE, SWEEP: sweep})
            run_id = run.info.run_id
        self.client.log_text(run_id, spec_text, "sweep.yaml")
        self.client.log_dict(run_id, plan, "plan.json")
        return run_id

    def start_trial_run(self, experiment_id: str, parent_id: str, sweep: str, trial: PlannedTrial) -> str:
        tags = {PARENT_RUN_ID: parent_id, ROLE: TRIAL_ROLE, SWEEP: sweep, TRIAL_KEY: trial.key, ATTEMPTS: "1"}
        tags[VARIED_TAG] = json.dumps(trial.varied, default=str)[:5000]
        source = trial.config.train.init_from
        if source is not None and source.run:
            tags[INIT_FROM_RUN] = source.run
        run = self.client.create_run(experiment_id, run_name=trial.label, tags=tags)
        self.log_params(run.info.run_id, {**trial_params(trial.config), **trial.derived})
        return run.info.run_id

    def reopen_trial_run(self, run: Run) -> str:
        """A trial's earlier, unfinished run (killed with its driver, failed, or retried) continues: one MLflow run
        per trial, its attempts counted in ``mm1.attempts``."""
        run_id = run.info.run_id
        attempts = int(run.data.tags.get(ATTEMPTS, "1")) + 1
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, ATTEMPTS, str(attempts))
        if ERROR in run.data.tags:  # kept for the record, but no longer the run's error
            self.client.set_tag(run_id, EARLIER_ERROR, run.data.tags[ERROR])
            self.client.delete_tag(run_id, ERROR)
        return run_id

    def kill_orphans(self, runs: Iterable[Run], reason: str) -> int:
        """Ends runs left RUNNING by a driver that died: KILLED, with the reason in ``mm1.error``."""
        orphans = [run for run in runs if run.info.status == "RUNNING"]
        for run in orphans:
            self.end_run(run.info.run_id, "KILLED", reason)
        return len(orphans)

    # ------------------------------------------------------------------ writing
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's per-batch limit on params
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_history(self, run_id: str, history: Iterable[tuple[int, Mapping[str, float]]]) -> None:
        """Writes ``(step, {name: value})`` entries in as few batches as MLflow allows."""
        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, step) for step, values in history for name, value in values.items()]
        for start in range(0, len(metrics), _BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + _BATCH])

    def end_run(self, run_id: str, status: str, error: str | None = None) -> None:
        if error:
            self.client.log_batch(run_id, tags=[RunTag(ERROR, error[:5000])])
        self.client.set_terminated(run_id, status=status)


def prediction_table(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Sample predictions as MLflow table columns (lists of references joined with `` | ``)."""
    columns = ("task", "shots", "item", "prompt", "prediction", "references")
    table: dict[str, list[Any]] = {column: [] for column in columns}
    for row in rows:
        for column in columns:
            value = row.get(column, "")
            table[column].append(" | ".join(map(str, value)) if isinstance(value, (list, tuple)) else value)
    return table


def trial_params(config: Any) -> dict[str, Any]:
    """Every leaf of the resolved TrialConfig under its dotted path, plus the parameter counts: per component,
    the total, and the decoder's non-embedding N of MM1's LR law (Sec. 3.4), all of it and active per token."""
    from mm1core.data.tokenizer import build_tokenizer

    vocab_size = build_tokenizer(config.data.tokenizer).vocab_size
    return {**config.flat_params(), **config.model.parameter_counts(vocab_size)}


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


class MlflowSink:
    """A ``mm1core.train.MetricSink`` writing straight to one MLflow run (``mm1 train``, no Ray)."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.run_id = tracker, run_id
        self._history: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._history.append((step, dict(metrics)))

    def flush(self) -> None:
        self.tracker.log_history(self.run_id, self._history)
        self._history = []
