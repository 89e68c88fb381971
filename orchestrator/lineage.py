"""``train.init_from`` references resolved against MLflow: which finished trials a second-stage sweep starts from.

A reference ``{sweep: NAME, experiment: E, where: {path: value}, step: last|N}`` names the FINISHED trial runs of
sweep NAME (in experiment E, default: the referring sweep's) whose params match every ``where`` entry; each gives
a ``Source``: its run id, the checkpoint file of ``step`` (``last``: the trial's own, tag ``mm1.checkpoint``; N:
one of ``train.save_at_steps``, tag ``mm1.checkpoints``), the values its own sweep varied (they become the
referring trial's ``init.<path>`` params) and the trial config the checkpoint holds (its ``model`` section is what
the referring trial builds). Everything that can go wrong is a ``SpecError`` naming the reference, before any run
or Ray job starts: no such store, experiment or sweep; nothing matching; a step never saved; a file gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mm1core.config import InitFrom, TrialConfig, path_problem
from orchestrator.errors import SpecError

WHERE = "train.init_from"  # how problems name the field


@dataclass(frozen=True)
class Source:
    """One pre-trained trial a reference matched."""

    run_id: str
    name: str  # the source run's name (its label in its sweep)
    path: str  # the checkpoint file to start from
    step: int  # the optimizer step that checkpoint was saved at
    varied: dict[str, Any] = field(default_factory=dict)  # what the source's sweep varied, as the source has it
    config: dict[str, Any] = field(default_factory=dict)  # the trial config saved with the checkpoint


class MlflowSources:
    """Looks references up in one MLflow tracking store (opened on first use: a sweep without references never
    touches MLflow while it is validated)."""

    def __init__(self, uri: str | None = None) -> None:
        self.given_uri = uri  # as --tracking-uri: None is $MLFLOW_TRACKING_URI, else ./mlflow.db
        self._tracker: Any = None
        self._cache: dict[str, list[Source]] = {}

    def sources(self, reference: InitFrom, experiment: str) -> list[Source]:
        """The sources of ``reference`` (``experiment``: the referring sweep's, used when the reference names
        none), in the source sweep's order; ``SpecError`` when there are none."""
        key = json.dumps([reference.model_dump(mode="json"), experiment], sort_keys=True)
        if key not in self._cache:
            self._cache[key] = self._resolve(reference, reference.experiment or experiment)
        return self._cache[key]

    @property
    def uri(self) -> str:
        from orchestrator.tracking import resolve_tracking_uri

        return resolve_tracking_uri(self.given_uri)

    def _resolve(self, reference: InitFrom, experiment: str) -> list[Source]:
        from orchestrator.tracking import STOPPED_EARLY

        for path in reference.where:
            problem = path_problem(TrialConfig, path)
            if problem:
                raise SpecError(f"{WHERE}.where.{path}: {problem}")
        runs = self._finished_runs(reference.sweep or "", experiment)
        matching = [run for run in runs if all(_same(run.data.params.get(p), v) for p, v in reference.where.items())]
        if not matching:
            raise SpecError(_nothing_matches(reference, experiment, runs))
        trained = [run for run in matching if run.data.tags.get(STOPPED_EARLY) != "true"]
        if not trained:
            raise SpecError(
                f"{WHERE}: the {len(matching)} matching trial(s) of sweep {reference.sweep!r} were all stopped early "
                "by its scheduler, so none saved a model"
            )
        matching = trained
        varied = _varied_values(runs)
        return [self._source(run, reference, varied.get(run.info.run_id, {})) for run in matching]

    def _finished_runs(self, sweep: str, experiment: str) -> list[Any]:
        """The sweep's FINISHED trial runs, one per trial (its newest), oldest trial first."""
        from orchestrator.tracking import TRIAL_KEY, Tracker, store_exists

        if not store_exists(self.uri):
            hint = "run that sweep first, or pass --tracking-uri"
            raise SpecError(f"{WHERE}: sweep {sweep!r}: no MLflow store at {self.uri} ({hint})")
        if self._tracker is None:
            self._tracker = Tracker(self.uri)
        experiment_id = self._tracker.experiment_id(experiment, create=False)
        if experiment_id is None:
            raise SpecError(f"{WHERE}: experiment {experiment!r} not found in {self.uri} (set init_from.experiment?)")
        newest: dict[str, Any] = {}
        for run in self._tracker.trial_runs(experiment_id, sweep):  # newest first
            if run.info.status == "FINISHED":
                newest.setdefault(run.data.tags.get(TRIAL_KEY, run.info.run_id), run)
        if not newest:
            raise SpecError(
                f"{WHERE}: no FINISHED trial of sweep {sweep!r} in experiment {experiment!r} "
                f"(run it first: mm1 sweep run <its YAML>)"
            )
        return sorted(newest.values(), key=lambda run: run.info.start_time)

    def _source(self, run: Any, reference: InitFrom, varied: dict[str, Any]) -> Source:
        from mm1core.checkpoint import checkpoint_config
        from orchestrator.tracking import CHECKPOINT_TAG, CHECKPOINTS_TAG

        tags, name = run.data.tags, f"run {run.info.run_name!r} ({run.info.run_id})"
        max_steps = int(float(run.data.params.get("train.max_steps", "0")))
        saved = json.loads(tags.get(CHECKPOINTS_TAG, "{}"))
        if CHECKPOINT_TAG in tags:
            saved[str(max_steps)] = tags[CHECKPOINT_TAG]
        step = max_steps if reference.step == "last" else reference.step
        if str(step) not in saved:
            have = ", ".join(sorted(saved, key=int)) or "none"
            raise SpecError(
                f"{WHERE}.step: {name} saved no model at step {step} (saved at: {have}; "
                f"list the step in train.save_at_steps of sweep {reference.sweep!r})"
            )
        path = Path(saved[str(step)])
        if not path.is_file():
            raise SpecError(f"{WHERE}: {name}: its checkpoint {path} is gone (run the sweep again on this machine?)")
        try:
            config = checkpoint_config(path)
        except ValueError as error:
            raise SpecError(f"{WHERE}: {name}: {path}: {error}") from None
        varied = {**varied, **_tag_varied(tags)}
        return Source(run.info.run_id, run.info.run_name, str(path), step, varied, config)


def _tag_varied(tags: dict[str, str]) -> dict[str, Any]:
    from orchestrator.tracking import VARIED_TAG

    try:
        varied = json.loads(tags.get(VARIED_TAG, "{}"))
    except ValueError:
        return {}
    return varied if isinstance(varied, dict) else {}


_NOT_COMPARED = ("model.encoder.params", "model.connector.params", "model.decoder.", "model.total_params")


def _varied_values(runs: list[Any]) -> dict[str, dict[str, Any]]:
    """For runs logged without ``mm1.varied``: the config params whose values differ between the sweep's runs
    (parameter counts left out), per run id."""
    if all(_tag_varied(run.data.tags) for run in runs):
        return {}
    names = set().union(*(run.data.params for run in runs))
    varied = sorted(
        name
        for name in names
        if not name.startswith(("init.", "train.init_from"))
        and not (name.endswith("params") and name.startswith(_NOT_COMPARED))
        and len({run.data.params.get(name) for run in runs}) > 1
    )
    return {run.info.run_id: {name: _value(run.data.params.get(name)) for name in varied} for run in runs}


def _value(text: str | None) -> Any:
    """A param's text as the value it was (numbers, booleans, JSON lists), else the text."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"True": True, "False": False, "None": None}.get(text, text)


def _same(text: str | None, want: Any) -> bool:
    """A logged param (text) equals a ``where`` value (YAML)."""
    if text is None:
        return want is None
    have = _value(text)
    if isinstance(want, bool) or isinstance(have, bool):
        return have is want
    if isinstance(want, (int, float)) and isinstance(have, (int, float)):
        return float(have) == float(want)
    if isinstance(want, list):
        return have == want
    return str(have) == str(want)


def _nothing_matches(reference: InitFrom, experiment: str, runs: list[Any]) -> str:
    """Why no run matched: the values each ``where`` path has among the sweep's finished runs."""
    where = ", ".join(f"{path}: {value}" for path, value in reference.where.items())
    present = "; ".join(
        f"{path} there: " + ", ".join(sorted({str(run.data.params.get(path)) for run in runs}))
        for path in reference.where
    )
    return (
        f"{WHERE}: none of the {len(runs)} FINISHED trials of sweep {reference.sweep!r} in experiment "
        f"{experiment!r} matches where {{{where}}} ({present})"
    )
