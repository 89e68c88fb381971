"""The text pre-training corpus of stage 0 (issue 20): what a web-text LLM has read before multimodal training.

MM1 starts from an LLM pre-trained on text alone (Sec. 3.2, 3.4); the embedded world's analogue is this corpus,
in its own random stream (``Split.CORPUS``; held-out documents in ``Split.CORPUS_EVAL``). Document ``k`` comes
from ``item_rng(seed, split, k)``: seeded, random-access, torch-free. Two kinds, drawn by ``CORPUS_KINDS``:

- ``facts``: the world's text-only documents (``world.text_document``: colour mixing, shape facts, counting,
  arithmetic, lists, imagined scenes), the generators of the ``text`` stream reused;
- ``scenes``: 1-3 scenes *described in words* (no image): a complete description (``detailed_description`` or
  ``synthetic_caption``), then 1-3 lines ``question: {q} short answer: {a}`` (the evaluation's VQA prompt line,
  ``world.vqa_line``, without its ``<image>``) and sometimes a caption line ``a photo of {caption}.`` (the
  captioning prompt's): an LM trained on it knows the evaluation's formats and answers them from text.

Every word is the world tokenizer's (``VOCABULARY``); a document is at most ``TEXT_DOCUMENT_TOKENS`` long, as a
``text`` document, so ``lengths.TEXT_TOKENS_TEXT_ONLY`` bounds it.

Held out (``HeldOut``): nothing of the first ``HELD_OUT_ITEMS`` items of each embedded evaluation set is in the
corpus, in the sense a text can hold it:

- a described scene is never the scene of an evaluation item (captioning, VQA, reading, counting on
  ``Split.EVAL``), compared by ``scene_key``: each object's position, size, colour and shape in reading order and
  the writing and its place, all that words say of a scene (the jitter and the background grey are not words).
  So no eval scene's description, question or answer about it is in the corpus; the bare question templates
  (``how many shapes are there?``) are, by design: they are the format;
- a ``facts`` document never holds the scored text (``context`` + right choice) of a TextCore item about an
  imagined scene (``imagine ... there are`` -> ``two``). TextCore's other items (mixing, sides, arithmetic,
  counting on) are the world's facts, which the corpus teaches as the ``text`` stream does: their texts occur.

A candidate that breaks either rule is redrawn from the same random stream. A stage trains the LM on the corpus
by opening it in its ``text`` slot (``streams.open_stream(CORPUS, "synthetic", ...)``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mm1core.data.records import IMAGE, Document
from mm1core.data.scene import Scene
from mm1core.data.world import (
    TEXT_DOCUMENT_TOKENS,
    Split,
    captioning_item,
    describe,
    detailed_description,
    item_rng,
    sample_question,
    sample_scene,
    synthetic_caption,
    text_document,
    text_eval_item,
    token_count,
    vqa_item,
    vqa_item_of_kind,
    vqa_line,
)

CORPUS = "corpus"  # the stream's name (``streams.open_stream``)
HELD_OUT_ITEMS = 256  # items of each evaluation set kept out of the corpus (the default eval uses 64)
CORPUS_KINDS: dict[str, float] = {"facts": 0.5, "scenes": 0.5}  # kind -> share of documents
SCENES_PER_DOCUMENT = (1, 3)  # inclusive
QUESTIONS_PER_SCENE = (1, 3)  # inclusive, distinct questions
CAPTION_LINE_P = 0.3  # share of described scenes followed by an ``a photo of ...`` line

SceneKey = tuple[tuple[tuple[str, str, str, str], ...], tuple[str, str] | None]


def scene_key(scene: Scene) -> SceneKey:
    """What words can say of ``scene``: ``(position, size, colour, shape)`` per object in reading order, and
    ``(text, position)`` of its writing (None without); two scenes of one key have the same descriptions."""
    objects = tuple((obj.position, obj.size, obj.colour, obj.shape) for obj in scene.objects)
    return objects, None if scene.text is None else (scene.text.text, scene.text.position)


# ------------------------------------------------------------------------------------------------ held out
# evaluation set -> its item ``index``'s scene (mm1core.evaluate.tasks.WORLD_TASKS: test items of Split.EVAL)
EVAL_SCENES: dict[str, Callable[[int, int], Scene]] = {
    "caption": lambda seed, index: captioning_item(seed, Split.EVAL, index, references=1)[0],
    "vqa": lambda seed, index: vqa_item(seed, Split.EVAL, index).scene,
    "reading": lambda seed, index: vqa_item_of_kind(seed, Split.EVAL, index, "reading").scene,
    "counting": lambda seed, index: vqa_item_of_kind(seed, Split.EVAL, index, "counting").scene,
}
IMAGINED = "imagine "  # how a TextCore item about an imagined scene starts


@dataclass(frozen=True)
class HeldOut:
    """What the corpus must not hold (see the module docstring): evaluation scenes, by ``scene_key``, and the
    scored texts of TextCore's imagined-scene items."""

    scenes: frozenset[SceneKey]
    cloze: tuple[str, ...]

    def allows_scene(self, scene: Scene) -> bool:
        return scene_key(scene) not in self.scenes

    def allows_text(self, text: str) -> bool:
        return not any(cloze in text for cloze in self.cloze)


@functools.cache
def held_out(seed: int, items: int = HELD_OUT_ITEMS) -> HeldOut:
    """The first ``items`` items of every set of ``EVAL_SCENES`` and of TextCore's ``world`` set."""
    scenes = frozenset(scene_key(scene(seed, index)) for scene in EVAL_SCENES.values() for index in range(items))
    cloze = []
    for index in range(items):
        item = text_eval_item(seed, index)
        if item.context.startswith(IMAGINED):
            cloze.append(f"{item.context} {item.choices[item.answer]}")
    return HeldOut(scenes, tuple(dict.fromkeys(cloze)))


# ------------------------------------------------------------------------------------------------ documents
def facts_document(rng: np.random.Generator, held: HeldOut) -> Document:
    """A ``text`` stream document (``world.text_document``) that holds no held-out TextCore text."""
    while True:
        document = text_document(rng, 0)
        if held.allows_text(document.text):
            return document


def described_scene(rng: np.random.Generator, held: HeldOut) -> Scene:
    """A scene that is no evaluation item's."""
    while True:
        scene = sample_scene(rng)
        if held.allows_scene(scene):
            return scene


def question_lines(scene: Scene, rng: np.random.Generator) -> list[str]:
    """1-3 distinct ``question: ... short answer: ...`` lines about ``scene``: the VQA prompt line without its
    ``<image>``, answered canonically."""
    wanted = int(rng.integers(QUESTIONS_PER_SCENE[0], QUESTIONS_PER_SCENE[1] + 1))
    lines: dict[str, None] = {}
    for _ in range(4 * wanted):  # a one-shape scene has few distinct questions
        question = sample_question(scene, rng)
        lines[vqa_line(question.text, question.answer).removeprefix(f"{IMAGE} ")] = None
        if len(lines) == wanted:
            break
    return list(lines)


def scene_block(scene: Scene, rng: np.random.Generator) -> str:
    """A complete description of ``scene``, then its question lines and maybe a caption line, one per line."""
    description = detailed_description(scene) if rng.random() < 0.5 else synthetic_caption(scene, rng)
    lines = [description, *question_lines(scene, rng)]
    if rng.random() < CAPTION_LINE_P:
        lines.append(f"a photo of {describe(scene, rng, text_p=0.5)}.")
    return "\n".join(lines)


def scenes_document(rng: np.random.Generator, held: HeldOut) -> Document:
    """1-3 scene blocks (``scene_block``), as many as fit in ``TEXT_DOCUMENT_TOKENS`` (the first always does)."""
    blocks: list[str] = []
    for _ in range(int(rng.integers(SCENES_PER_DOCUMENT[0], SCENES_PER_DOCUMENT[1] + 1))):
        block = scene_block(described_scene(rng, held), rng)
        if not blocks or token_count("\n".join([*blocks, block])) <= TEXT_DOCUMENT_TOKENS:
            blocks.append(block)
    return Document("\n".join(blocks), (), "text")


CORPUS_SAMPLERS: dict[str, Callable[[np.random.Generator, HeldOut], Document]] = {
    "facts": facts_document,
    "scenes": scenes_document,
}


def corpus_document(seed: int, index: int, held: HeldOut | None = None, split: Split = Split.CORPUS) -> Document:
    """Document ``index`` of the corpus (``Split.CORPUS``; ``Split.CORPUS_EVAL`` for held-out documents): its
    kind drawn by ``CORPUS_KINDS``, then its text; ``held`` defaults to ``held_out(seed)``."""
    held = held_out(seed) if held is None else held
    rng = item_rng(seed, split, index)
    weights = np.array(list(CORPUS_KINDS.values()), dtype=np.float64)
    kind = tuple(CORPUS_KINDS)[int(rng.choice(len(weights), p=weights / weights.sum()))]
    return CORPUS_SAMPLERS[kind](rng, held)


class CorpusStream:
    """The corpus as a ``streams.Stream``: document ``k`` is ``corpus_document(seed, k)``. Text only (no
    ``<image>``), ``kind`` ``text``: it fills a mixture's ``text`` slot."""

    name = CORPUS

    def __init__(self, seed: int, held_out_items: int = HELD_OUT_ITEMS, split: Split = Split.CORPUS) -> None:
        self.seed, self.split = seed, split
        self.held = held_out(seed, held_out_items)

    def document(self, index: int) -> Document:
        return corpus_document(self.seed, index, self.held, self.split)
