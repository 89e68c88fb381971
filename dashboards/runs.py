"""Trial runs read back from MLflow as one pandas table: the input of every dashboard.

One row per trial run. Columns: ``run_id``, ``run_name``, ``sweep``, ``trial_key``, ``status``, ``start_time``,
``init_from_run`` (tag ``mm1.init_from_run``: the run whose checkpoint an SFT trial started from, else None);
then every param under its dotted path (``model.connector.type``, ``train.lr``), typed back from MLflow's
strings (numbers, booleans, JSON lists stay text); then every metric's last value under its name
(``eval/avg/4shot``, ``train/loss``). Params use dots and metrics slashes, so the two never collide.

Two training stages share this layout (MM1 Sec. 5): pre-training runs (``train.stage`` = ``pretrain``, or no such
param for runs logged before SFT existed) log ``eval/<task>/<k>shot`` and ``eval/avg/<k>shot``; SFT runs
(``train.stage`` = ``sft``) log ``eval/sft/<task>`` and ``eval/sft/avg`` and carry their lineage as params
``init.<path>`` (the source pre-training run's values of what its sweep varied) and ``init.step``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dashboards import DashboardError
from mm1core.cli_common import sqlite_path, store_exists
from mm1core.runnames import INIT_FROM_RUN, ROLE, SWEEP, SWEEP_ROLE, TRIAL_KEY, TRIAL_ROLE

RUN_COLUMNS = ("run_id", "run_name", "sweep", "trial_key", "status", "start_time", "init_from_run")
SEED = "train.seed"
# Seeds are never an axis: a run's own, and (SFT) the seed of the pre-training run it started from.
SEEDS = (SEED, "init.train.seed")
# Params naming one run's source (an id, a file): unique per run, so never an axis either.
LINEAGE_IDS = ("train.init_from.run", "train.init_from.path")
STAGE, SFT = "train.stage", "sft"
SFT_AVG = "eval/sft/avg"
_SFT_METRIC = re.compile(r"^eval/sft/([^/]+)$")
# Params that follow from the others (parameter counts): never an "axis" of their own.
DERIVED_SUFFIXES = (".params", "_params")


class Store:
    """Read access to one MLflow tracking store, plus logging dashboard outputs to a sweep's parent run."""

    def __init__(self, uri: str) -> None:
        if not store_exists(uri):
            raise DashboardError(f"--tracking-uri: {sqlite_path(uri)} does not exist (no MLflow store there)")
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    def experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            names = sorted(e.name for e in self.client.search_experiments())
            known = ", ".join(names) or "none"
            raise DashboardError(f"--experiment: no experiment {name!r} in {self.uri} (experiments: {known})")
        return experiment.experiment_id

    def trials(
        self, experiment: str, sweep: str | None = None, statuses: Sequence[str] = ("FINISHED",)
    ) -> pd.DataFrame:
        """The experiment's trial runs (of one sweep when given) whose status is in ``statuses``."""
        experiment_id = self.experiment_id(experiment)
        query = f"tags.`{ROLE}` = '{TRIAL_ROLE}'"
        if sweep is not None:
            query += f" AND tags.`{SWEEP}` = '{sweep.replace(chr(39), chr(92) + chr(39))}'"
        runs = [run for run in self._search(experiment_id, query) if run.info.status in statuses]
        if not runs:
            where = f"sweep {sweep!r} of experiment {experiment!r}" if sweep else f"experiment {experiment!r}"
            raise DashboardError(f"no {'/'.join(statuses).lower()} trial runs in {where} ({self.uri})")
        return runs_frame(runs)

    def sweep_parents(self, experiment: str, sweeps: Iterable[str]) -> dict[str, str]:
        """sweep name -> the run id of its parent run (sweeps without one, e.g. ``mm1 train`` runs, are left out)."""
        experiment_id = self.experiment_id(experiment)
        parents = {}
        for sweep in sorted({s for s in sweeps if s}):
            found = self._search(experiment_id, f"tags.`{ROLE}` = '{SWEEP_ROLE}' AND tags.`{SWEEP}` = '{sweep}'")
            if found:
                parents[sweep] = found[0].info.run_id
        return parents

    def history(self, run_id: str, metric: str) -> pd.DataFrame:
        """A metric's logged values over steps: columns ``step``, ``value`` (sorted by step)."""
        points = self.client.get_metric_history(run_id, metric)
        frame = pd.DataFrame([(p.step, p.value) for p in points], columns=["step", "value"])
        return frame.sort_values("step", kind="stable").drop_duplicates("step", keep="last").reset_index(drop=True)

    def log_outputs(self, run_ids: Iterable[str], files: Iterable[Path], artifact_path: str = "dashboards") -> None:
        """Copies ``files`` into the artifacts of each run (a sweep's parent run) under ``artifact_path``."""
        files = [Path(f) for f in files]
        for run_id in run_ids:
            for path in files:
                self.client.log_artifact(run_id, str(path), artifact_path)

    def runs(self, run_ids: Iterable[str]) -> pd.DataFrame:
        """The runs with these ids, in whichever experiment they live (``runs_frame``'s table; ids not found are
        left out, so the table may be empty)."""
        found = []
        for run_id in dict.fromkeys(i for i in run_ids if isinstance(i, str) and i):
            try:
                found.append(self.client.get_run(run_id))
            except MlflowException:  # deleted for good, or from another store
                continue
        return runs_frame(found) if found else pd.DataFrame(columns=list(RUN_COLUMNS))

    def _search(self, experiment_id: str, query: str) -> list[Run]:
        return search_all_runs(self.client, experiment_id, query)


def search_all_runs(client: MlflowClient, experiment_id: str, query: str) -> list[Run]:
    """Every run of the experiment matching ``query``, newest first, across MLflow's result pages (the sweep
    layer's ``Tracker`` searches with it too)."""
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


def runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """The table described in the module docstring, newest run first."""
    rows = []
    for run in runs:
        tags = run.data.tags
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "sweep": tags.get(SWEEP, ""),
            "trial_key": tags.get(TRIAL_KEY, ""),
            "status": run.info.status,
            "start_time": run.info.start_time,
            "init_from_run": tags.get(INIT_FROM_RUN),
        }
        row.update({name: parse_param(value) for name, value in run.data.params.items()})
        row.update(run.data.metrics)
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values("start_time", ascending=False, kind="stable").reset_index(drop=True)


def parse_param(text: str) -> Any:
    """MLflow keeps params as text: numbers and booleans come back typed, everything else stays text."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def param_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in RUN_COLUMNS and "/" not in c]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if "/" in c]


def varied_params(frame: pd.DataFrame) -> list[str]:
    """The params that take more than one value across the rows, sorted: the axes these runs sweep (seeds,
    parameter counts and the ids of the runs SFT trials started from excluded)."""
    varied = []
    for column in param_columns(frame):
        if column in SEEDS or column in LINEAGE_IDS or column.endswith(DERIVED_SUFFIXES):
            continue
        if frame[column].map(_hashable).nunique(dropna=False) > 1:
            varied.append(column)
    return sorted(varied)


def stages(frame: pd.DataFrame) -> pd.Series:
    """Each row's training stage: ``train.stage``, where missing (runs logged before SFT existed) ``pretrain``."""
    if STAGE not in frame:
        return pd.Series("pretrain", index=frame.index, dtype=object)
    return frame[STAGE].where(frame[STAGE].notna(), "pretrain")


def sft_metrics(columns: Iterable[str]) -> list[str]:
    """The SFT scores among ``columns``: ``eval/sft/avg`` first, then ``eval/sft/<task>`` by name (the SFT loss,
    ``eval/sft/loss``, is not a score and left out)."""
    columns = list(columns)
    tasks = sorted(c for c in columns if _SFT_METRIC.match(c) and c not in (SFT_AVG, "eval/sft/loss"))
    return ([SFT_AVG] if SFT_AVG in columns else []) + tasks


def latest_per_trial(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (sweep, trial_key): the newest run (a re-run trial counts once). Runs without a key stay."""
    keyed = frame[frame["trial_key"] != ""]
    single = keyed.sort_values("start_time", ascending=False, kind="stable").drop_duplicates(["sweep", "trial_key"])
    return pd.concat([single, frame[frame["trial_key"] == ""]]).reset_index(drop=True)


def seed_average(frame: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Rows grouped by ``by`` (seeds and everything else not in ``by`` pooled): per metric its ``mean``, ``std``
    (sample std; NaN for a single run) and ``n``. Columns: ``by``, ``runs`` (rows in the group), then
    ``<metric>`` (the mean), ``<metric> std``, ``<metric> n`` (rows with a value)."""
    missing = [c for c in [*by, *metrics] if c not in frame.columns]
    if missing:
        raise DashboardError(f"no param or metric named {missing[0]!r} in these runs")
    work = frame[[*by, *metrics]].copy()
    for column in by:
        work[column] = work[column].map(_hashable)
    grouped = work.groupby(list(by), dropna=False, sort=True)
    out = grouped[list(metrics)].mean()
    out.insert(0, "runs", grouped.size())
    for metric in metrics:
        out[f"{metric} std"] = grouped[metric].std()
        out[f"{metric} n"] = grouped[metric].count()
    return out.reset_index()


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value
