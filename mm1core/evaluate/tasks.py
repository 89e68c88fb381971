"""Evaluation tasks (MM1 Sec. 3.1 and Appendix): what a trial is scored on, each at every k of ``eval.shots``.

A task of ``eval.tasks`` is an embedded-world set (``caption``, ``vqa``, ``reading``, ``counting``) or a
benchmark on disk (``FileTask``: ``coco-captions`` or ``vqav2``); ``build_tasks`` makes them in config order, by
the names of two registries. ``mm1core.evaluate.textcore`` scores the text-only multiple-choice sets of
``eval.textcore``.

Generation tasks follow MM1's protocol for pre-trained models: a k-shot prompt is k demonstrations (an image
and its completed answer, each on its own line) then the test image and the open prompt, answered greedily up
to a newline or ``<eos>``. Prompts are MM1's: ``<image> A photo of`` (captioning, CIDEr-D) and ``<image>
Question: {question} Short answer:`` (VQA, VQAv2 accuracy); the embedded world writes them lower-cased, as its
training documents do (its tokenizer lower-cases everything anyway). The demonstrations of test item ``i`` are
the first k of one seeded permutation of a support pool disjoint from the test items, so 4-shot demonstrations
are within 8-shot's. Demonstration images are rendered at the test image's resolution; mixed-resolution
demonstrations (cheaper, lower-resolution demonstration images) are a later concern.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mm1core.config import FileTask, TrialConfig
from mm1core.data.records import IMAGE, Document, ImageLike
from mm1core.data.tokenizer import TextTokenizer
from mm1core.data.world import Split, item_rng
from mm1core.evaluate.generate import complete
from mm1core.model import MM1Model
from mm1core.registry import Registry

LOGGER = logging.getLogger("mm1core.evaluate")


@dataclass
class TaskResult:
    """A task's score in percent and its first ``eval.predictions`` predictions, as rows ``{"task", "shots",
    "item", "prompt", "prediction", "references"}``."""

    score: float
    predictions: list[dict] = field(default_factory=list)


class Task(Protocol):
    """A scored evaluation set; ``name`` is the metric's ``eval/<name>/<k>shot``. ``score`` gets the model in
    eval mode under ``torch.inference_mode``."""

    name: str

    def score(self, model: MM1Model, cfg: TrialConfig, tokenizer: TextTokenizer, shots: int) -> TaskResult: ...


def prediction_row(task: str, shots: int, item: Any, prompt: str, prediction: str, references: Sequence[str]) -> dict:
    return {
        "task": task,
        "shots": shots,
        "item": item,
        "prompt": prompt,
        "prediction": prediction,
        "references": list(references),
    }


# --------------------------------------------------------------------------------------- few-shot generation
@dataclass(frozen=True)
class Example:
    """One item of a generation task.

    ``query`` is its prompt line up to where the answer goes (``<image> a photo of``); a demonstration is
    ``f"{query} {answer}"``. ``references`` are what a prediction is scored against; ``index`` is the item's
    place in its test set (it seeds the item's demonstrations) and ``item`` its id in the predictions table.
    """

    image: ImageLike
    query: str
    answer: str
    references: tuple[str, ...]
    index: int
    item: Any


def few_shot_prompt(demonstrations: Sequence[Example], test: Example) -> Document:
    """Each demonstration completed on its own line, then the test item's open line."""
    text = "".join(f"{demo.query} {demo.answer}\n" for demo in demonstrations) + test.query
    if text.count(IMAGE) != len(demonstrations) + 1:
        raise ValueError(f"a prompt line holds {IMAGE} once, at its start: {text!r}")
    return Document(text, (*(demo.image for demo in demonstrations), test.image), "prompt")


class FewShotTask(ABC):
    """A task scored on the greedy answers to k-shot prompts: subclasses give the test items and each item's
    demonstrations; ``metric(references, predictions)`` scores the answers in percent."""

    name: str
    metric: Callable[[Sequence[Sequence[str]], Sequence[str]], float]

    @abstractmethod
    def test_examples(self, cfg: TrialConfig) -> list[Example]:
        """The test items (``cfg.eval.num_examples`` of them, less any that cannot be read)."""

    @abstractmethod
    def demonstrations(self, cfg: TrialConfig, index: int, shots: int) -> list[Example]:
        """The ``shots`` demonstrations of test item ``index``: the first ``shots`` of the item's permutation of
        the support pool."""

    def prompts(self, cfg: TrialConfig, shots: int) -> list[tuple[Example, Document]]:
        """Every test item with its ``shots``-shot prompt."""
        tests = self.test_examples(cfg)
        return [(test, few_shot_prompt(self.demonstrations(cfg, test.index, shots), test)) for test in tests]

    def score(self, model: MM1Model, cfg: TrialConfig, tokenizer: TextTokenizer, shots: int) -> TaskResult:
        prompts = self.prompts(cfg, shots)
        if not prompts:
            raise ValueError(f"{self.name}: no test item to evaluate")
        answers = complete(model, cfg, tokenizer, [prompt for _, prompt in prompts])
        score = self.metric([test.references for test, _ in prompts], answers)
        rows = [
            prediction_row(self.name, shots, test.item, prompt.text, answer, test.references)
            for (test, prompt), answer in zip(prompts[: cfg.eval.predictions], answers, strict=False)
        ]
        return TaskResult(score, rows)


class WorldTask(FewShotTask):
    """An embedded-world set: test item ``i`` is item ``i`` of ``Split.EVAL``; its demonstrations are items of
    ``Split.SUPPORT`` (a random stream of its own: the pools never overlap), chosen by ``demonstration_indices``."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def example(self, seed: int, split: Split, index: int) -> Example:
        """Item ``index`` of ``split`` of the world of ``seed``."""

    def test_examples(self, cfg: TrialConfig) -> list[Example]:
        return [self.example(cfg.data.seed, Split.EVAL, index) for index in range(cfg.eval.num_examples)]

    def demonstrations(self, cfg: TrialConfig, index: int, shots: int) -> list[Example]:
        seed = cfg.data.seed
        return [self.example(seed, Split.SUPPORT, j) for j in demonstration_indices(seed, index, shots)]


SUPPORT_POOL = 1024  # embedded support items the demonstrations are drawn from


def demonstration_order(seed: int, index: int, pool: int) -> list[int]:
    """Test item ``index``'s permutation of a support pool of ``pool`` items (fixed by ``seed`` and ``index``)."""
    return item_rng(seed, Split.DEMO_CHOICE, index).permutation(pool).tolist()


def demonstration_indices(seed: int, index: int, shots: int, pool: int = SUPPORT_POOL) -> list[int]:
    """Support items for test item ``index``: the first ``shots`` of its permutation, so 4-shot demonstrations
    are within 8-shot's."""
    if shots > pool:
        raise ValueError(f"{shots} demonstrations asked of a support pool of {pool}")
    return demonstration_order(seed, index, pool)[:shots]


# ------------------------------------------------------------------------------------------------ registries
@dataclass(frozen=True)
class TaskEntry:
    """One task family: ``builder`` is ``"module:Class"`` (imported on demand), built as ``Class(name,
    **options)`` for an embedded set or ``Class(file_task)`` for a file task."""

    builder: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)

    def load(self) -> type:
        module, name = self.builder.split(":")
        return getattr(importlib.import_module(module), name)


WORLD_TASKS: Registry[TaskEntry] = Registry("embedded evaluation task")  # names: config.EMBEDDED_TASKS
WORLD_TASKS.register(
    "caption", TaskEntry("mm1core.evaluate.captioning:CaptionTask", "COCO-style captioning, CIDEr-D (MM1 Sec. 3.1)")
)
WORLD_TASKS.register(
    "vqa", TaskEntry("mm1core.evaluate.vqa:WorldVQATask", "VQAv2-style questions of every kind, VQAv2 accuracy")
)
WORLD_TASKS.register(
    "reading",
    TaskEntry("mm1core.evaluate.vqa:WorldVQATask", "reading written text (TextVQA-like)", {"kind": "reading"}),
)
WORLD_TASKS.register(
    "counting", TaskEntry("mm1core.evaluate.vqa:WorldVQATask", "counting questions", {"kind": "counting"})
)

FILE_TASKS: Registry[TaskEntry] = Registry("file task type")  # keys: FileTask.type
FILE_TASKS.register(
    "coco-captions", TaskEntry("mm1core.evaluate.files:CocoCaptionsTask", "COCO-captions JSON + images, CIDEr-D")
)
FILE_TASKS.register(
    "vqav2", TaskEntry("mm1core.evaluate.files:VQAv2Task", "VQAv2 questions + annotations JSON, VQAv2 accuracy")
)


def build_task(spec: str | FileTask) -> Task:
    if isinstance(spec, str):
        entry = WORLD_TASKS.get(spec)
        return entry.load()(spec, **entry.options)
    return FILE_TASKS.get(spec.type).load()(spec)


def build_tasks(cfg: TrialConfig) -> list[Task]:
    """The tasks of ``cfg.eval.tasks``, in order; an unknown name raises, listing the known ones."""
    return [build_task(spec) for spec in cfg.eval.tasks]
