"""One trial's configuration: the four sections, how a config is resolved, and its stable ``trial_key``.

The sweep layer (``orchestrator``) only composes these; ``mm1 train trial.yaml`` reads one directly. Every
omitted field takes its default. A config is values only: the preflight (``mm1core.preflight``) resolves its
paths, reads the files it names and checks everything a trial would hit at start.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from pydantic import model_validator

from mm1core.config.base import StrictModel
from mm1core.config.data import DataConfig
from mm1core.config.dotted import flatten
from mm1core.config.eval import EvalConfig
from mm1core.config.model import ModelConfig
from mm1core.config.train import LawCoefficients, LRLaw, TrainConfig
from mm1core.connectors.config import COMMON_FIELDS

# Fields that change how a trial runs, not what it learns: left out of trial_key, so changing them never re-runs
# a finished trial.
UNHASHED = (
    ("train", "checkpoint_every_n_steps"),
    ("train", "compile"),  # the same model and updates, up to kernel-level rounding
    ("train", "profile"),  # only observes the steps
    ("train", "save_at_steps"),  # extra copies of the weights along the way
)
# Fields added after trials were first run: they count only when set to another value than their default, so
# those trials keep their keys.
HASHED_WHEN_SET = (
    "train.stage",
    "train.init_from",
    "data.sft",
    "model.connector.freeze",
    "model.decoder.freeze",
)


@functools.cache
def _default_tree() -> dict[str, Any]:
    """The default trial config as JSON (what ``HASHED_WHEN_SET`` fields are compared with); callers never mutate
    it."""
    return TrialConfig().model_dump(mode="json")


def _walk(tree: dict[str, Any], path: str) -> dict[str, Any]:
    """The mapping holding ``path``'s last key."""
    for key in path.split(".")[:-1]:
        tree = tree[key]
    return tree


class TrialConfig(StrictModel):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _law_gives_usable_lr(self) -> TrialConfig:
        lr = self.train.lr
        if isinstance(lr, LRLaw) and isinstance(lr.law, LawCoefficients) and not self.model.decoder.shape_from_file:
            problem = law_problem(self)
            if problem:
                raise ValueError(problem)
        return self

    def resolved(self) -> TrialConfig:
        """A copy with every ``auto`` and LR law replaced by its value, as logged and hashed: ``train.lr`` is a
        number after this. A law read from a file needs the file read first (``mm1core.preflight``)."""
        train = self.train
        if isinstance(train.lr, LRLaw):
            train = train.model_copy(update={"lr": train.lr.lr(self.model.decoder.non_embedding_params())})
        train = train.model_copy(update={"weight_decay": train.resolved_weight_decay})
        return self.model_copy(update={"train": train})

    def flat_params(self) -> dict[str, Any]:
        """Every leaf under its dotted path (``model.connector.type``), lists as JSON text."""
        return flatten(self.model_dump(mode="json"))

    def trial_key(self) -> str:
        """Stable 12-hex-digit hash of the resolved config: equal configs, equal keys, across runs. Fields added
        after trials were first run count only when set (``HASHED_WHEN_SET``), so those trials keep their keys;
        a resolved ``init_from`` counts by its source run, not by where its file lies."""
        tree = self.resolved().model_dump(mode="json")
        for section, name in UNHASHED:
            tree[section].pop(name)
        defaults = _default_tree()
        for path in HASHED_WHEN_SET:
            parent, name = _walk(tree, path), path.rsplit(".", 1)[-1]
            if parent.get(name) == _walk(defaults, path).get(name):
                parent.pop(name, None)
        connector = tree["model"]["connector"]  # a family's own fields count only when set (they came later)
        family = type(self.model.connector)
        for name in set(family.model_fields) - COMMON_FIELDS:
            if connector.get(name) == family.model_fields[name].default:
                connector.pop(name, None)
        source = tree["train"].get("init_from")
        if source and source.get("run"):
            source.pop("path")
        canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def law_problem(config: TrialConfig) -> str | None:
    """Why ``train.lr``'s law gives no usable LR for this decoder (``None`` when it does)."""
    lr = config.train.lr
    if not isinstance(lr, LRLaw):
        return None
    n = config.model.decoder.non_embedding_params()
    value = lr.lr(n)
    if not 0 < value <= 10:
        return f"train.lr: the law gives eta = {value:g} at N = {n} (model.decoder); check a and b"
    return None


def load_trial(raw: dict[str, Any]) -> TrialConfig:
    """Validates a trial mapping (values only); raises ``ValidationError``."""
    return TrialConfig.model_validate(raw)
