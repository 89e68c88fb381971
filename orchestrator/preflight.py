"""The sweep's preflight: ``mm1core.preflight`` once per expanded trial, against the memory each trial will have.

``sweep validate``, ``sweep plan`` and ``sweep run`` (before Ray starts) call ``preflight_sweep``; its problems are
exit 2, one line each, ``trial <trial_key> (<label>): <dotted.path>: <what is wrong>``; the same problem in many
trials is printed once with their count, and one that every trial has in a field no axis sets is the base's:
``base.<dotted.path>: <what is wrong> (every trial: N)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mm1core.estimate import TrialEstimate
from mm1core.preflight import Budget, preflight
from orchestrator.expand import Trial, is_varied
from orchestrator.spec import Resources, SweepSpec


@dataclass
class SweepPreflight:
    """Each trial's estimate (by trial key), the budget it was checked against, and the problems found."""

    budget: Budget
    estimates: dict[str, TrialEstimate] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def trial_budget(resources: Resources, concurrent: int | None) -> Budget:
    """What one trial (one worker of a data-parallel trial) will have: its share of a GPU when it asks for one,
    else host memory shared by the trials (and their workers) that run at once on this machine."""
    if resources.gpus_per_trial > 0:
        return Budget.gpu(resources.gpus_per_trial / resources.workers_per_trial)
    return Budget.host(trials_at_once(resources, concurrent) * resources.workers_per_trial)


def trials_at_once(resources: Resources, concurrent: int | None) -> int:
    """Trials running together on this machine: the sweep's (or --max-concurrent's) limit, at most what its cores
    hold at ``cpus_per_trial`` each."""
    cores = os.cpu_count() or 1
    fits = max(1, int(cores // (resources.cpus_per_trial * resources.workers_per_trial)))
    return min(concurrent, fits) if concurrent else fits


def preflight_sweep(spec: SweepSpec, trials: list[Trial], concurrent: int | None = None) -> SweepPreflight:
    """``mm1core.preflight`` for every trial, each at its per-worker batch (data parallelism splits the batch)."""
    result = SweepPreflight(trial_budget(spec.resources, concurrent or spec.max_concurrent))
    seen: dict[str, list[Trial]] = {}
    for trial in trials:
        config = per_worker(trial, spec.resources.workers_per_trial)
        report = preflight(config, result.budget)
        if report.estimate is not None:
            result.estimates[trial.key] = report.estimate
        for problem in report.problems:
            seen.setdefault(str(problem), []).append(trial)
    axes = [*spec.grid, *spec.zip, "train.init_from"]
    for problem, where in seen.items():
        if len(where) == len(trials) and not is_varied(problem.split(": ", 1)[0], axes):
            result.problems.append(f"base.{problem} (every trial: {len(trials)})")  # the base's value
            continue
        more = f" (and {len(where) - 1} more trial(s) alike)" if len(where) > 1 else ""
        result.problems.append(f"trial {where[0].key} ({where[0].label}): {problem}{more}")
    return result


def per_worker(trial: Trial, workers: int) -> object:
    """The trial's config as one data-parallel worker runs it: ``batch_size / workers`` rows a step."""
    if workers == 1:
        return trial.config
    train = trial.config.train.model_copy(update={"batch_size": max(1, trial.config.train.batch_size // workers)})
    return trial.config.model_copy(update={"train": train})
