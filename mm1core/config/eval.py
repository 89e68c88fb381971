"""The eval section (MM1 Sec. 3.1): zero- and few-shot tasks, the text-only TextCore sets, periodic evaluation.

File tasks and TextCore files are kept as given; the preflight resolves and checks them.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from mm1core.config.base import TASK_FILE, TASK_NAME, StrictModel, no_nul

EMBEDDED_TASKS = ("caption", "vqa", "reading", "counting")  # the embedded world's sets (mm1core.evaluate)


class FileTask(StrictModel):
    """A benchmark the user holds on disk: COCO-captions JSON (+ image folder) or VQAv2 questions + annotations."""

    type: Literal["coco-captions", "vqav2"] = Field(description="coco-captions | vqav2")
    path: str = Field(description="captions JSON (coco-captions) or questions JSON (vqav2)")
    annotations: str | None = Field(None, description="vqav2: the annotations JSON with the ten answers")
    images: str | None = Field(None, description="image folder (default: next to the JSON)")
    name: str | None = Field(None, description="metric name, eval/<name>/<k>shot (default: the file's stem)")

    _paths = field_validator("path", "annotations", "images")(no_nul)

    @model_validator(mode="after")
    def _annotations_for_vqa(self) -> FileTask:
        if self.type == "vqav2" and self.annotations is None:
            raise ValueError("annotations: a vqav2 task needs the annotations JSON (the ten answers per question)")
        return self

    @property
    def metric_name(self) -> str:
        return self.name or Path(self.path).stem


class EvalConfig(StrictModel):
    """Zero- and few-shot evaluation (MM1 Sec. 3.1): greedy, MM1's prompts, CIDEr / VQAv2 accuracy / TextCore."""

    shots: list[int] = Field(default_factory=lambda: [0, 4, 8], description="k demonstrations before each item")
    num_examples: int = Field(64, gt=0, description="held-out items per task")
    max_new_tokens: int = Field(20, gt=0, description="longest generated answer")
    batch_size: int = Field(32, gt=0, description="prompts per evaluation forward pass")
    tasks: list[
        typing.Annotated[
            typing.Annotated[str, Tag(TASK_NAME)] | typing.Annotated[FileTask, Tag(TASK_FILE)],
            Discriminator(lambda v: TASK_FILE if isinstance(v, (dict, FileTask)) else TASK_NAME),
        ]
    ] = Field(
        default_factory=lambda: list(EMBEDDED_TASKS),
        description=f"the embedded world's tasks ({', '.join(EMBEDDED_TASKS)}) and/or file tasks",
    )
    textcore: list[str] = Field(
        default_factory=lambda: ["world"],
        description="world (the embedded text set) and/or multiple-choice jsonl",
    )
    every_n_steps: int | None = Field(None, gt=0, description="also evaluate during training (learning curves, ASHA)")
    periodic: Literal["full", "loss"] = Field(
        "full", description="what every_n_steps evaluates: everything, or only the held-out loss (cheap; for ASHA)"
    )
    predictions: int = Field(16, ge=0, description="sample predictions per task logged as an artifact")

    _sets = field_validator("textcore")(lambda sets: [no_nul(entry) for entry in sets])

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, tasks: list[str | FileTask]) -> list[str | FileTask]:
        for task in tasks:
            if isinstance(task, str) and task not in EMBEDDED_TASKS:
                raise ValueError(f"{task!r} is not one of {', '.join(EMBEDDED_TASKS)} (or a file task mapping)")
        names = [task if isinstance(task, str) else task.metric_name for task in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be distinct, got {', '.join(names)}")
        return tasks

    def task_names(self) -> list[str]:
        return [task if isinstance(task, str) else task.metric_name for task in self.tasks]

    @field_validator("shots")
    @classmethod
    def _shots(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("shots must list at least one k (e.g. [0, 4, 8])")
        if any(k < 0 for k in v):
            raise ValueError("shots must be >= 0")
        return sorted(set(v))
