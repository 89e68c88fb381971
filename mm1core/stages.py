"""The training stages (MM1 Sec. 3 pre-training, Sec. 5 supervised fine-tuning), one registry entry each.

A stage says what a trial of it trains on, how it is scored and what it reports while it trains, so the trainer,
the evaluation harness, the preflight and the sweep layer look a stage up instead of testing its name. Entries
name their torch-side code as ``"module:attribute"`` strings, imported when a trial runs: importing this module
(as the config does, to check ``train.stage``) imports no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mm1core.registry import Registry

if TYPE_CHECKING:
    from mm1core.config.eval import EvalConfig

COMPONENTS = ("encoder", "connector", "decoder")


@dataclass(frozen=True)
class Stage:
    """One training stage.

    - ``data``: the LightningDataModule class, built as ``Class(cfg, tokenizer)``;
    - ``evaluate`` / ``evaluate_loss``: the end-of-trial evaluation and the cheap periodic one, each called as
      ``function(model, cfg, tokenizer) -> dict of metrics`` (or an ``Evaluation``) under ``torch.inference_mode``;
    - ``reported_metrics(eval_config)``: the metric names a trial logs while it trains (what ASHA can compare);
    - ``components``: what it builds and trains (a ``freeze`` switch still fixes one of them);
    - ``few_shot``: whether its evaluation builds few-shot prompts (``eval.shots``), whose length the preflight
      checks against the decoder;
    - ``logs_mixture``: whether its data is the pre-training mixture, whose realised shares are logged.
    """

    description: str
    data: str
    evaluate: str
    evaluate_loss: str
    reported_metrics: Callable[[EvalConfig], set[str]]
    components: tuple[str, ...] = COMPONENTS
    few_shot: bool = True
    logs_mixture: bool = True

    def load(self, attribute: str) -> Any:
        """The object ``self.<attribute>`` names (``"module:name"``), imported now."""
        module, name = getattr(self, attribute).split(":")
        return getattr(importlib.import_module(module), name)


def _pretrain_metrics(ev: EvalConfig) -> set[str]:
    if ev.every_n_steps is None:
        return {"train/loss"}
    if ev.periodic == "loss":
        return {"train/loss", "eval/loss"}
    names = {"train/loss", "eval/loss"} | ({"eval/textcore"} if ev.textcore else set())
    for shots in ev.shots:
        names |= {f"eval/{task}/{shots}shot" for task in ev.task_names()}
        names |= {f"eval/avg/{shots}shot"} if ev.tasks else set()
    return names


def _sft_metrics(ev: EvalConfig) -> set[str]:
    if ev.every_n_steps is None:
        return {"train/loss"}
    tasks = set() if ev.periodic == "loss" else {f"eval/sft/{task}" for task in [*ev.task_names(), "avg"]}
    return {"train/loss", "eval/sft/loss"} | tasks


STAGES: Registry[Stage] = Registry("stage")
STAGES.register(
    "pretrain",
    Stage(
        "multimodal pre-training on the caption / interleaved / text mixture (MM1 Sec. 3)",
        data="mm1core.data.datamodule:PretrainingData",
        evaluate="mm1core.evaluate.harness:pretraining_evaluation",
        evaluate_loss="mm1core.evaluate.harness:pretraining_loss",
        reported_metrics=_pretrain_metrics,
    ),
)
STAGES.register(
    "sft",
    Stage(
        "supervised fine-tuning on instruction conversations, loss on the answers only (MM1 Sec. 5)",
        data="mm1core.data.sft:SFTData",
        evaluate="mm1core.evaluate.instruct:instruction_evaluation",
        evaluate_loss="mm1core.evaluate.instruct:instruction_loss",
        reported_metrics=_sft_metrics,
        few_shot=False,
        logs_mixture=False,
    ),
)
