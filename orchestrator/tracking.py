"""MLflow, laid out as DESIGN.md promises: a parent run per sweep, a nested child run per trial.

Only the driver writes (one writer: no sqlite lock contention between trials). Trials stream their
metrics to the driver through Ray Tune results; ``TrialLogger`` turns them into batched MLflow writes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from orchestrator.expand import Trial

ROLE, SWEEP, TRIAL_KEY, ERROR = "mm1.role", "mm1.sweep", "mm1.trial_key", "mm1.error"
CHECKPOINT_TAG = "mm1.checkpoint"
CHECKPOINTS_TAG = "mm1.checkpoints"  # JSON {step: path}: the models train.save_at_steps saved, and the last one
VARIED_TAG = "mm1.varied"  # JSON {dotted path: value}: what the trial's sweep varies, as the trial has it
STOPPED_EARLY = "mm1.stopped_early"  # tag of a trial the scheduler (ASHA) stopped before train.max_steps
INIT_FROM_RUN = "mm1.init_from_run"  # the run whose checkpoint a trial started from (train.init_from)
PROFILE_TAG = "mm1.profile"
DRIVER, ATTEMPTS, RESUMED = "mm1.driver", "mm1.attempts", "mm1.resumed_from_step"  # who runs it; tries; resume
EARLIER_ERROR = "mm1.earlier_error"  # the error of the attempt before, once a trial is tried again
_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch call


def resolve_tracking_uri(uri: str | None) -> str:
    """``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db`` (absolute)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def store_exists(uri: str) -> bool:
    """False for a sqlite file that is not there yet (reading must not create it)."""
    path = sqlite_path(uri)
    return path is None or path.exists()


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
    def experiment_id(self, name: str, create: bool = True) -> str | None:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        if not create:
            return None
        db = sqlite_path(self.uri)
        location = (db.parent / "mlartifacts").as_uri() if db else None
        return self.client.create_experiment(name, artifact_location=location)

    def sweep_run(self, experiment_id: str, sweep: str) -> Run | None:
        runs = self._search(experiment_id, f"tags.`{ROLE}` = 'sweep' AND tags.`{SWEEP}` = '{_quote(sweep)}'")
        return runs[0] if runs else None

    def trial_runs(self, experiment_id: str, sweep: str) -> list[Run]:
        """Every trial run of the sweep, newest first."""
        return self._search(experiment_id, f"tags.`{ROLE}` = 'trial' AND tags.`{SWEEP}` = '{_quote(sweep)}'")

    def _search(self, experiment_id: str, query: str) -> list[Run]:
        return search_all_runs(self.client, experiment_id, query)

    def start_sweep_run(self, experiment_id: str, sweep: str, spec_text: str, plan: list[dict[str, Any]]) -> str:
        """Re-uses the sweep's parent run when there is one, so re-runs gather under one parent."""
        existing = self.sweep_run(experiment_id, sweep)
        if existing is not None:
            run_id = existing.info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run = self.client.create_run(experiment_id, run_name=sweep, tags={ROLE: "sweep", SWEEP: sweep})
            run_id = run.info.run_id
        self.client.log_text(run_id, spec_text, "sweep.yaml")
        self.client.log_dict(run_id, plan, "plan.json")
        return run_id

    def start_trial_run(self, experiment_id: str, parent_id: str, sweep: str, trial: Trial) -> str:
        tags = {MLFLOW_PARENT_RUN_ID: parent_id, ROLE: "trial", SWEEP: sweep, TRIAL_KEY: trial.key, ATTEMPTS: "1"}
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


def search_all_runs(client: MlflowClient, experiment_id: str, query: str) -> list[Run]:
    """Every run of the experiment matching ``query``, newest first, across MLflow's result pages."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], query, max_results=1000, page_token=token, order_by=["attributes.start_time DESC"]
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


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
