"""Expansion of a sweep into trials: grid x zip x seeds - exclude, in a deterministic order.

Order: grid axes vary in the order written, the last fastest (like nested loops); the zip index varies
inside the grid; seeds innermost. Each trial carries the resolved ``TrialConfig``, its stable
``trial_key`` and the values that vary across the sweep.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from mm1core.config import LRLaw, TrialConfig, describe_errors, set_path
from mm1core.preflight import resolve_files
from mm1core.stages import STAGES
from orchestrator.errors import SpecError
from orchestrator.spec import SweepSpec
from orchestrator.sweepfile import with_overrides

if TYPE_CHECKING:
    from mm1core.config import InitFrom
    from orchestrator.lineage import Source


class SourceFinder(Protocol):
    """Resolves ``train.init_from`` references (``orchestrator.lineage.MlflowSources``)."""

    def sources(self, reference: InitFrom, experiment: str) -> list[Source]: ...


# What a trial started from another's checkpoint takes from it, unless its sweep sets it: the model (the weights
# must fit), the tokenizer (the ids must mean the same) and the world (the same scenes, held-out items included).
INHERITED = ("model", "data.tokenizer", "data.seed")


@dataclass(frozen=True)
class Trial:
    index: int
    key: str
    config: TrialConfig  # resolved: no "auto" left
    varied: dict[str, Any]  # dotted path -> value, for the axes of this sweep
    derived: dict[str, Any] = field(default_factory=dict)  # values computed per trial: an LR law's LR and its a, b

    @property
    def label(self) -> str:
        """The MLflow run name: the varied values, short and in axis order, then the seed
        (``c-abstractor/144tok/336px/s0``), so the UI's run list and compare view read at a glance."""
        parts = [short_value(path, value) for path, value in self.varied.items() if path != "train.seed"]
        return "/".join([*parts, f"s{self.config.train.seed}"])


_UNITS = {"num_tokens": "tok", "resolution": "px", "max_steps": "steps", "batch_size": "bs", "seq_len": "len"}


def short_value(path: str, value: Any) -> str:
    """One varied value as a run-name part: names as they are, sizes with a unit, other numbers and switches
    with their field name (``lr0.003``, ``synthetic_captions`` / ``no-synthetic_captions``)."""
    field = path.rsplit(".", 1)[-1]
    if value is None or isinstance(value, bool):
        return field if value else f"no-{field}"
    if isinstance(value, (int, float)):
        return f"{value:g}{_UNITS[field]}" if field in _UNITS else f"{field}{value:g}"
    if isinstance(value, dict):
        return (
            f"{field}(" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()) + ")"
        )
    if isinstance(value, list):
        return f"{field}{json.dumps(value, separators=(',', ':'))}"
    return str(value)


def combinations(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every override set before exclusion: grid product x zip rows x seeds."""
    grid_rows = [dict(zip(spec.grid, values, strict=True)) for values in itertools.product(*spec.grid.values())]
    zip_len = len(next(iter(spec.zip.values()))) if spec.zip else 1
    zip_rows = [{path: values[i] for path, values in spec.zip.items()} for i in range(zip_len)]
    return [
        {**grid_row, **zip_row, "train.seed": seed}
        for grid_row in grid_rows
        for zip_row in zip_rows
        for seed in seeds_of(spec)
    ]


def seeds_of(spec: SweepSpec) -> list[int]:
    """The ``seeds`` list; when it is not given, a ``base.train.seed`` is the single seed."""
    if "seeds" in spec.model_fields_set:
        return spec.seeds
    return [spec.base.get("train", {}).get("seed", 0)]


def is_excluded(overrides: dict[str, Any], config: TrialConfig, rules: list[dict[str, Any]]) -> bool:
    """A trial is dropped when it matches every key of some rule (compared on the resolved config)."""
    flat = config.flat_params()
    return any(all(_same(flat.get(path, overrides.get(path)), want) for path, want in rule.items()) for rule in rules)


def _same(have: Any, want: Any) -> bool:
    if isinstance(want, list):  # list-valued leaves are flattened to JSON text
        return have == json.dumps(want)
    if isinstance(have, (int, float)) and isinstance(want, (int, float)) and not isinstance(want, bool):
        return float(have) == float(want)
    return have == want


def derived_values(given: TrialConfig, config: TrialConfig) -> dict[str, Any]:
    """With ``train.lr: {law: ...}``: the law's coefficients and the LR and weight decay it gives this trial."""
    if not isinstance(given.train.lr, LRLaw):
        return {}
    return {
        "train.lr_law.a": given.train.lr.law.a,
        "train.lr_law.b": given.train.lr.law.b,
        "train.lr": config.train.lr,
        "train.weight_decay": config.train.weight_decay,
    }


def expand(spec: SweepSpec, sources: SourceFinder | None = None) -> list[Trial]:
    """The sweep's trials, each config resolved (paths absolute against the sweep file's folder, LR laws read,
    ``auto`` replaced); raises ``SpecError`` naming every combination that is invalid as a whole. What a trial
    would hit at start beyond its values is the preflight's (``orchestrator.preflight``).

    A ``train.init_from`` reference to another sweep's trials is resolved by ``sources`` into one trial per
    matching source run (``orchestrator.lineage``); its ``init.<path>`` values (what the source's sweep varied)
    join the trial's varied values, and the source's model, tokenizer and world seed become the trial's unless
    this sweep sets them."""
    varied_paths = [*spec.grid, *spec.zip] + (["train.seed"] if len(seeds_of(spec)) > 1 else [])
    folder = spec.folder
    trials: list[Trial] = []
    problems: list[str] = []
    for overrides in combinations(spec):
        where = ", ".join(f"{p}={overrides[p]}" for p in varied_paths)
        try:
            given, unreadable = resolve_files(TrialConfig.model_validate(with_overrides(spec.base, overrides)), folder)
            starts = [] if unreadable else _starts(spec, overrides, given, sources)
        except ValidationError as exc:
            problems += [f"trial ({where}): {line}" for line in describe_errors(exc, model=TrialConfig)]
            continue
        problems += [_file_problem(path, message, where, varied_paths) for path, message in unreadable]
        for start, lineage in starts:
            given, unreadable = resolve_files(start, folder)  # what it inherited is absolute; its own paths again
            problems += [_file_problem(path, message, where, varied_paths) for path, message in unreadable]
            config = given.resolved()
            if is_excluded(overrides, config, spec.exclude):
                continue
            varied = {path: overrides[path] for path in varied_paths} | {
                k: v for k, v in lineage.items() if k != "init.step"
            }
            trial = Trial(len(trials), config.trial_key(), config, varied, derived_values(given, config) | lineage)
            trials.append(trial)
    problems += _layout_problems(spec, trials) + _scheduler_problems(spec, trials)
    if problems:
        raise SpecError("\n".join(dict.fromkeys(problems)))
    _check_distinct(trials)
    return trials


def _file_problem(path: str, message: str, where: str, varied_paths: list[str]) -> str:
    """A file the config names that cannot be resolved: the base's field when no axis sets it (one line for the
    whole sweep), else the trial's."""
    if not is_varied(path, varied_paths):
        return f"base.{path}: {message}"
    return f"trial ({where}): {path}: {message}"


def is_varied(path: str, varied_paths: list[str]) -> bool:
    """Whether an axis sets ``path``, or a section holding it, or a field inside it."""
    return any(
        path == axis or path.startswith((f"{axis}.", f"{axis}[")) or axis.startswith(f"{path}.")
        for axis in varied_paths
    )


def _starts(
    spec: SweepSpec, overrides: dict[str, Any], given: TrialConfig, sources: SourceFinder | None
) -> list[tuple[TrialConfig, dict[str, Any]]]:
    """``given`` with each source of its ``train.init_from`` filled in, and the lineage values (``init.<path>``,
    ``init.step``) each adds; ``given`` alone when it starts from no other sweep's trial."""
    reference = given.train.init_from
    if reference is None:
        return [(given, {})]
    if reference.sweep is None:  # a plain path: the model it holds
        from mm1core.checkpoint import checkpoint_config

        tree = _inherit(spec, overrides, checkpoint_config(str(reference.path)))
        return [(TrialConfig.model_validate(tree), {})]
    if sources is None:
        raise SpecError(f"train.init_from: sweep {reference.sweep!r}: resolving a reference needs an MLflow store")
    starts = []
    for source in sources.sources(reference, spec.experiment):
        tree = _inherit(spec, overrides, source.config)
        set_path(tree, "train.init_from", {**reference.model_dump(), "run": source.run_id, "path": source.path})
        lineage = {f"init.{path}": value for path, value in source.varied.items()} | {"init.step": source.step}
        starts.append((TrialConfig.model_validate(tree), lineage))
    return starts


def _inherit(spec: SweepSpec, overrides: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """The trial's config tree with the ``INHERITED`` parts taken from the ``source`` config, except where this
    sweep sets them (its base or a varied path at or under them)."""
    tree = with_overrides(spec.base, overrides)
    own = {**_leaves(spec.base), **overrides}
    for part in INHERITED:
        section, _, leaf = part.partition(".")
        value = source.get(section, {}) if not leaf else source.get(section, {}).get(leaf)
        if value is None and leaf:
            continue
        base_value = copy.deepcopy(value)
        mine = {p: v for p, v in own.items() if p == part or p.startswith(part + ".")}
        if part in mine:
            continue
        set_path(tree, part, base_value)
        for path, v in mine.items():
            if path.endswith(".type") and isinstance(base_value, dict):
                _another_family(tree, path, v)
            set_path(tree, path, v)
    return tree


def _another_family(tree: dict[str, Any], type_path: str, family: Any) -> None:
    """A sweep that sets another ``type`` for an inherited union section (``model.connector``) takes that family
    with its own defaults, not the inherited family's fields: the section is emptied before its values are set."""
    *parents, _ = type_path.split(".")
    node: Any = tree
    for key in parents[:-1]:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    section = node.get(parents[-1]) if isinstance(node, dict) and parents else None
    if isinstance(section, dict) and section.get("type") != family:
        node[parents[-1]] = {}


def _leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of a nested mapping under its dotted path (values as they are)."""
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            leaves.update(_leaves(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def _layout_problems(spec: SweepSpec, trials: list[Trial]) -> list[str]:
    """Data-parallel trials split each global batch equally over their workers, on whole GPUs."""
    workers, gpus = spec.resources.workers_per_trial, spec.resources.gpus_per_trial
    if workers == 1:
        return []
    problems = [
        f"trial {t.label}: train.batch_size {t.config.train.batch_size} is not divisible by "
        f"resources.workers_per_trial {workers}"
        for t in trials
        if t.config.train.batch_size % workers
    ]
    if 0 < gpus < 1:
        problems.append(f"resources.gpus_per_trial: {gpus:g}: data-parallel workers need a whole GPU each")
    return problems


def scheduler_metrics(config: TrialConfig) -> set[str]:
    """The metrics an early-stopping scheduler can see while ``config`` trains: its stage's (``mm1core.stages``)."""
    return STAGES.get(config.train.stage).reported_metrics(config.eval)


def _scheduler_problems(spec: SweepSpec, trials: list[Trial]) -> list[str]:
    """ASHA needs a metric every trial reports while it trains, optimised in the direction that makes sense."""
    scheduler = spec.scheduler
    if scheduler.type != "asha":
        return []
    wanted = "min" if scheduler.metric.endswith("loss") else "max"  # losses down, scores (CIDEr, accuracy) up
    if scheduler.mode != wanted:
        return [f"scheduler.mode: {scheduler.mode} is the wrong direction for {scheduler.metric} (use {wanted})"]
    problems = []
    for trial in trials:
        if scheduler.metric not in scheduler_metrics(trial.config):
            hint = (
                " (set eval.every_n_steps: ASHA compares trials on the periodic evaluations)"
                if scheduler.metric.startswith("eval/") and trial.config.eval.every_n_steps is None
                else f"; reported while training: {', '.join(sorted(scheduler_metrics(trial.config)))}"
            )
            problems.append(f"scheduler.metric: trial {trial.label} does not report {scheduler.metric}{hint}")
        elif trial.config.train.max_steps <= scheduler.grace_steps:
            problems.append(
                f"scheduler.grace_steps: {scheduler.grace_steps} is not below trial {trial.label}'s "
                f"train.max_steps {trial.config.train.max_steps} (nothing would be stopped early)"
            )
    return problems[:1] + ([f"... and {len(problems) - 1} more trial(s) alike"] if len(problems) > 1 else [])


def _check_distinct(trials: list[Trial]) -> None:
    seen: dict[str, Trial] = {}
    for trial in trials:
        if trial.key in seen:
            raise SpecError(
                f"trials {seen[trial.key].label} and {trial.label} resolve to the same config "
                "(a grid value repeats, or differs only in spelling)"
            )
        seen[trial.key] = trial
    if not trials:
        raise SpecError("exclude: every trial is excluded; nothing to run")
