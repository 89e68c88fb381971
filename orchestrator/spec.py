"""The sweep YAML: a pydantic model of the whole file (DESIGN.md, "Sweep YAML"), strict about unknown keys.

``load_spec(path, sets)`` reads a file (``orchestrator.sweepfile``: duplicate keys refused, ``extends`` merged,
``--set`` values applied), validates the result and raises ``SpecError`` whose message is one line per problem,
each naming the path at fault (``grid.model.connector.type[1]: 'x' is not one of avg-pool``,
``--set train.lrr: train has no field 'lrr' (fields: ...)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from mm1core.config import UNION_TAGS, TrialConfig, describe_error_items, describe_errors, path_problem
from orchestrator.errors import SpecError
from orchestrator.sweepfile import apply_sets, parse_sets, read_sweep, read_yaml, set_path_problems, with_overrides

# Re-exported: callers read trial files and parse --set here as they validate sweeps.
__all__ = ["SpecError", "SweepSpec", "apply_sets", "compose", "load_spec", "parse_sets", "parse_spec", "read_yaml"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    cpus_per_trial: float = Field(1.0, gt=0, allow_inf_nan=False, description="per worker when workers_per_trial > 1")
    gpus_per_trial: float = Field(0.0, ge=0, allow_inf_nan=False, description="fractions pack several trials on a GPU")
    workers_per_trial: int = Field(1, ge=1, le=1024, description="data-parallel workers (Ray Train + Lightning DDP)")

    @field_validator("gpus_per_trial")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and not float(v).is_integer():
            raise ValueError(f"gpus_per_trial above 1 must be a whole number, got {v:g}")
        return v


class Scheduler(_Strict):
    """How trials are scheduled: ``fifo`` runs every trial to the end; ``asha`` stops poor ones early."""

    type: Literal["fifo", "asha"] = "fifo"
    metric: str = "train/loss"
    mode: Literal["min", "max"] = "min"
    grace_steps: int = Field(50, gt=0)
    reduction_factor: float = Field(3.0, gt=1, allow_inf_nan=False)
    # ASHA keeps a trial only if it beats those that reached a rung before it: trials in grid order (a sorted LR
    # grid) would each beat the last on the way up to the optimum and all run on. A seeded shuffle avoids that.
    shuffle: bool = True


class Failure(_Strict):
    max_retries: int = Field(0, ge=0)
    fail_fast: bool = False


class SweepSpec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    experiment: str = Field("mm1", min_length=1)
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    zip: dict[str, list[Any]] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0])
    resources: Resources = Resources()
    max_concurrent: int | None = Field(None, gt=0)
    scheduler: Scheduler = Scheduler()
    failure: Failure = Failure()
    _folder: Path | None = PrivateAttr(None)  # the sweep file's folder: relative paths in it are meant from there

    @property
    def folder(self) -> Path | None:
        """The folder relative paths in the sweep resolve against (``None``: the working directory)."""
        return self._folder

    @field_validator("grid")
    @classmethod
    def _no_empty_axis(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in grid.items():
            if not values:
                raise ValueError(f"{path}: empty list (a grid axis needs at least one value)")
        return grid

    @field_validator("zip")
    @classmethod
    def _equal_lengths(cls, zipped: dict[str, list[Any]]) -> dict[str, list[Any]]:
        lengths = {path: len(values) for path, values in zipped.items()}
        if any(n == 0 for n in lengths.values()):
            empty = next(p for p, n in lengths.items() if n == 0)
            raise ValueError(f"{empty}: empty list (zip lists need at least one value)")
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{p} has {n}" for p, n in lengths.items())
            raise ValueError(f"zip lists must have equal lengths: {detail}")
        return zipped

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds:
            raise ValueError("at least one seed is needed")
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        if any(s < 0 or s >= 2**32 for s in seeds):
            raise ValueError("seeds must be >= 0 and < 2**32")
        return seeds

    @model_validator(mode="after")
    def _axes_disjoint(self) -> SweepSpec:
        axes = [("grid", path) for path in self.grid] + [("zip", path) for path in self.zip]
        for section, path in axes:
            outer = next((f"{s}.{p}" for s, p in axes if path.startswith(p + ".")), None)
            if outer:
                raise ValueError(f"{section}.{path}: inside {outer} (vary a section or its fields, not both)")
        both = sorted(set(self.grid) & set(self.zip))
        if both:
            raise ValueError(f"zip.{both[0]}: is also a grid axis (vary a path in grid or zip, not both)")
        if "train.seed" in self.grid or "train.seed" in self.zip:
            raise ValueError("train.seed: vary seeds with the top-level 'seeds' list")
        return self


def parse_spec(data: dict[str, Any]) -> SweepSpec:
    """Validates the file's shape, then every dotted path and value against ``TrialConfig``."""
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError("\n".join(describe_errors(exc))) from None
    problems = _path_problems(spec)
    problems += _value_problems(spec, bad_paths={line.split(": ", 1)[0].split(".", 1)[1] for line in problems})
    if problems:
        raise SpecError("\n".join(problems))
    return spec


def compose(path: str | Path, sets: Sequence[str] = ()) -> dict[str, Any]:
    """The mapping ``load_spec`` validates: the file merged over the files it ``extends``, then the ``--set`` values
    (``parse_sets`` entries) in its ``base``. Resolution order: defaults < extended files < the file < ``--set``."""
    path = Path(path)
    data = read_sweep(path)
    overrides = parse_sets(sets)
    if not overrides:
        return data
    problems = _set_problems(data, overrides)
    if problems:
        raise SpecError("\n".join(problems))
    base = data.get("base", {})
    if isinstance(base, dict):  # anything else is the file's own error, reported by validation
        data["base"] = apply_sets(base, overrides)
    return data


def load_spec(path: str | Path, sets: Sequence[str] = ()) -> SweepSpec:
    """Reads, composes (``compose``) and validates a sweep file. Relative paths in it, and in the files it extends,
    are meant from the folder of the file at ``path``: the caller resolves them there (``mm1 sweep``)."""
    spec = parse_spec(compose(path, sets))
    spec._folder = Path(path).resolve().parent
    return spec


def _set_problems(data: dict[str, Any], sets: dict[str, Any]) -> list[str]:
    """A ``--set`` names a trial-config field that no axis (nor the ``seeds`` list) overwrites, with a value that
    field takes (checked like a grid value, on top of the file's base)."""
    problems = set_path_problems(sets)
    axes = [
        (section, path) for section in ("grid", "zip") if isinstance(data.get(section), dict) for path in data[section]
    ]
    base = data.get("base", {})
    for path, value in sets.items():
        if path_problem(TrialConfig, path):
            continue  # reported above
        axis = next((f"{s}.{a}" for s, a in axes if path == a or path.startswith(f"{a}.")), None)
        if axis:
            problems.append(f"--set {path}: {axis} is an axis of the sweep (it would overwrite this value)")
        elif path == "train.seed" and "seeds" in data:
            problems.append("--set train.seed: the sweep's 'seeds' list sets each trial's seed")
        elif isinstance(base, dict):
            problems += _one_value_problems(base, path, value, f"--set {path}")
    return problems


def _path_problems(spec: SweepSpec) -> list[str]:
    problems = []
    sections = [("grid", spec.grid), ("zip", spec.zip)] + [(f"exclude[{i}]", e) for i, e in enumerate(spec.exclude)]
    for section, mapping in sections:
        for path in mapping:
            problem = path_problem(TrialConfig, path)
            if problem:
                problems.append(f"{section}.{path}: {problem}")
    return problems


def _value_problems(spec: SweepSpec, bad_paths: set[str]) -> list[str]:
    """The base alone, then each grid/zip value on top of the base, so an error names the value's index."""
    try:
        TrialConfig.model_validate(spec.base)
    except ValidationError as exc:
        return describe_errors(exc, "base", model=TrialConfig)
    problems = []
    for section, mapping in (("grid", spec.grid), ("zip", spec.zip)):
        for path, values in mapping.items():
            if path in bad_paths:
                continue
            for index, value in enumerate(values):
                problems += _one_value_problems(spec.base, path, value, f"{section}.{path}[{index}]")
    return problems


def _one_value_problems(base: dict[str, Any], path: str, value: Any, where: str) -> list[str]:
    try:
        TrialConfig.model_validate(with_overrides(base, {path: value}))
    except ValidationError as exc:
        # Errors on this very path (or inside it) are the value's own fault, and so is one that the section holding
        # it raises about that field alone (``model.connector``: ``type: 'x' is not one of ...``); checks across
        # sections depend on the other axes too and are reported per trial by the expansion.
        own = []
        parent = path.rpartition(".")[0]
        for item in exc.errors():
            loc = ".".join(str(part) for part in item["loc"] if part not in UNION_TAGS)
            for line in describe_error_items([item], model=TrialConfig):
                field, _, message = line.partition(": ")
                mine = loc == path or loc.startswith((f"{path}.", f"{path}["))
                if mine or (loc == parent and field == path):
                    own.append(f"{where}{field[len(path) :]}: {message}")
        return own
    return []
