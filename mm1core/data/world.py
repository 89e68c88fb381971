"""The embedded world v2: a seeded, procedurally generated world of coloured shapes and short writing (numpy only).

A *scene* holds 1-3 objects (colour, shape, size, position slot) and, in about half the scenes, a short text: a
word of ``LEXICON`` or a number 0-99 written in a 3x5 bitmap font whose cells are 1/64 of the image wide. The
strokes are 1 px at 64 px, 2 px at 128 px and half a pixel at 32 px, so the writing is legible from 64 px up but
not at 32 px: the fine detail that makes image resolution matter (MM1 Sec. 3.2, TextVQA).

Every item is index-addressed: item ``i`` of split ``s`` comes from ``np.random.default_rng([seed, s, i])``,
so any item is random-access and the splits never share a random stream. What the world offers, after MM1
Sec. 3.3 (Fig. 5) and its four data lessons:

- caption pairs, with short noisy web-like captions (``web_caption``) or rich, complete synthetic ones
  (``synthetic_caption``, the VeCap analogue): captions drive zero-shot, synthetic ones add a few points;
- interleaved documents, among them the exact line patterns of few-shot prompts (``<image> a photo of ...`` and
  ``<image> question: ... short answer: ...``): interleaved data drives few-shot;
- text-only documents (facts, arithmetic, lists): text helps few-shot and text-only skills;
- evaluation sets from splits never trained on: captioning (``captioning_item``), VQA with ten human-style
  answers (``vqa_item``, VQAv2-like) and multiple-choice text cloze (``text_eval_item``).

Text is lower case over a closed vocabulary (``VOCABULARY``: words and the numbers 0-99); ``<image>`` marks where
an image goes. MM1's prompts are capitalised (``Question: ... Short answer:``); the tokenizer lower-cases them.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from mm1core.data.records import IMAGE, Document
from mm1core.data.scene import SIZES, Scene, SceneText, WorldObject

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 20),
    "purple": (135, 55, 185),
    "orange": (240, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond")
# Slot centres (x, y) in image widths, y pointing down; an object's position word is the slot of its centre.
# In reading order: captions list a scene's objects in this order.
POSITIONS: dict[str, tuple[float, float]] = {
    "top": (0.5, 0.18),
    "left": (0.18, 0.5),
    "center": (0.5, 0.5),
    "right": (0.82, 0.5),
    "bottom": (0.5, 0.82),
}
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the middle",
}
POSITION_ANSWERS = {"left": "left", "right": "right", "top": "top", "bottom": "bottom", "center": "middle"}
JITTER = 0.03  # how far a centre may stray from its slot, in image widths
NUMBERS = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"),
)
COLOUR_MIXES = {("red", "blue"): "purple", ("red", "yellow"): "orange", ("blue", "yellow"): "green"}
SHAPE_FACTS = {
    "circle": ("a circle has no corners.", "a circle is round."),
    "square": ("a square has four sides.", "a square has four corners."),
    "triangle": ("a triangle has three sides.", "a triangle has three corners."),
    "diamond": ("a diamond has four sides.", "a diamond is a square on its corner."),
}
SIDES = {"square": 4, "triangle": 3, "diamond": 4}
PREFIXES = ("a photo of", "a picture of", "an image of", "a drawing of", "photo of")
VAGUE_CAPTIONS = ("a picture.", "my drawing.", "shapes.", "an image of shapes.", "look at this.")
STORY_INTROS = ("here are {count} pictures.", "my {count} drawings.", "look at these {count} pictures.")
SAMPLE_KINDS = ("caption", "interleaved", "text")


class Split(IntEnum):
    """Random-stream ids: items of different splits never share a stream, so the splits never overlap."""

    TRAIN = 1
    EVAL = 2
    SUPPORT = 3  # few-shot demonstrations (captioning, VQA)
    DEMO_CHOICE = 4  # which support items a k-shot prompt uses
    TEXT_EVAL = 5  # text-only multiple-choice evaluation
    TEXT_SUPPORT = 6  # demonstrations for text-only few-shot prompts
    SFT = 7  # instruction conversations for supervised fine-tuning (MM1 Sec. 5)
    SFT_EVAL = 8  # held-out instruction conversations (``eval/sft/loss``)
    CORPUS = 9  # stage 0: the text pre-training corpus (``mm1core.data.corpus``)
    CORPUS_EVAL = 10  # stage 0: held-out corpus documents (the LM's held-out text loss)
    PROBE = 11  # stage 0: scenes a linear probe is fitted on (scored on ``EVAL`` scenes)


def item_rng(seed: int, split: Split, index: int) -> np.random.Generator:
    """The random stream of item ``index`` of ``split``: any item is generated alone, in any order."""
    return np.random.default_rng([seed, int(split), index])


def pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


# ----------------------------------------------------------------------------------------------- scenes
LEXICON = ("cat", "dog", "sun", "go", "stop", "yes", "no", "up", "hat", "box")
TEXT_P = 0.5  # share of scenes with writing
WORD_P = 0.6  # share of writing that is a word (the rest: a number 0-99)
GLYPH_CELL = 1 / 64  # a font cell, in image widths: strokes are 1 px at 64 px, half a pixel at 32 px
GLYPH_WIDTH, GLYPH_HEIGHT = 4, 5  # cells per glyph (3x5, plus a blank column between glyphs)
# Where writing goes in a free slot, pulled outwards from the slot centre so it never touches an object. Never
# the centre: with at most 3 of 5 slots taken, an outer slot is always free.
TEXT_ANCHORS: dict[str, tuple[float, float]] = {
    "top": (0.5, 0.15),
    "left": (0.14, 0.5),
    "right": (0.86, 0.5),
    "bottom": (0.5, 0.85),
}


def sample_object(rng: np.random.Generator, position: str) -> WorldObject:
    slot_x, slot_y = POSITIONS[position]
    jitter_x, jitter_y = rng.uniform(-JITTER, JITTER, size=2)
    return WorldObject(
        colour=pick(rng, tuple(COLOURS)),
        shape=pick(rng, SHAPES),
        size=pick(rng, tuple(SIZES)),
        position=position,
        x=slot_x + float(jitter_x),
        y=slot_y + float(jitter_y),
    )


def sample_text(rng: np.random.Generator, free: Sequence[str]) -> SceneText:
    """A lexicon word or a number 0-99 in one of the ``free`` outer slots, jittered by up to one glyph cell."""
    text = pick(rng, LEXICON) if rng.random() < WORD_P else str(int(rng.integers(100)))
    position = pick(rng, [slot for slot in free if slot in TEXT_ANCHORS])
    anchor_x, anchor_y = TEXT_ANCHORS[position]
    jitter_x, jitter_y = (int(j) for j in rng.integers(-1, 2, size=2))
    width = GLYPH_WIDTH * len(text) - 1  # in cells, one blank column between glyphs
    cells_x = round(anchor_x / GLYPH_CELL - width / 2) + jitter_x
    cells_y = round(anchor_y / GLYPH_CELL - GLYPH_HEIGHT / 2) + jitter_y
    return SceneText(text, position, cells_x * GLYPH_CELL, cells_y * GLYPH_CELL)


def sample_scene(rng: np.random.Generator, text_p: float = TEXT_P) -> Scene:
    """1-3 objects in distinct position slots, in reading order, on a light grey background; with probability
    ``text_p`` a text in a free slot."""
    count = int(rng.integers(1, 4))
    slots = np.sort(rng.permutation(len(POSITIONS))[:count])
    names = tuple(POSITIONS)
    objects = tuple(sample_object(rng, names[slot]) for slot in slots)
    background = int(rng.integers(200, 250))
    text = None
    if rng.random() < text_p:
        text = sample_text(rng, [name for index, name in enumerate(names) if index not in slots])
    return Scene(objects, background, text)


# ---------------------------------------------------------------------------------------------- render
def _circle(dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    return np.sqrt(dx * dx + dy * dy) - 1.1 * radius  # 1.1: about the area of the square


def _square(dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    return np.maximum(np.abs(dx), np.abs(dy)) - radius


def _triangle(dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    # apex (0, -1.2r), base corners (+-1.2r, 1.2r); the max of the three edges' half-plane distances
    r = 1.2 * radius
    sides = np.maximum(2 * dx - dy - r, -2 * dx - dy - r) / np.sqrt(5.0)
    return np.maximum(sides, dy - r)


def _diamond(dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    return (np.abs(dx) + np.abs(dy) - 1.35 * radius) / np.sqrt(2.0)


SIGNED_DISTANCE: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "diamond": _diamond,
}
EXTENT = 1.4  # every shape lies within EXTENT * radius of its centre (the diamond reaches 1.35)

# A 3x5 bitmap font (upper case), one string of 5 rows per glyph; '#' is ink.
INK = (25, 25, 25)
FONT: dict[str, str] = {
    "a": ".#. #.# ### #.# #.#",
    "b": "##. #.# ##. #.# ##.",
    "c": ".## #.. #.. #.. .##",
    "d": "##. #.# #.# #.# ##.",
    "e": "### #.. ##. #.. ###",
    "g": ".## #.. #.# #.# .##",
    "h": "#.# #.# ### #.# #.#",
    "n": "##. #.# #.# #.# #.#",
    "o": ".#. #.# #.# #.# .#.",
    "p": "##. #.# ##. #.. #..",
    "s": ".## #.. .#. ..# ##.",
    "t": "### .#. .#. .#. .#.",
    "u": "#.# #.# #.# #.# ###",
    "x": "#.# #.# .#. #.# #.#",
    "y": "#.# #.# .#. .#. .#.",
    "0": "### #.# #.# #.# ###",
    "1": ".#. ##. .#. .#. ###",
    "2": "##. ..# .#. #.. ###",
    "3": "##. ..# .#. ..# ##.",
    "4": "#.# #.# ### ..# ..#",
    "5": "### #.. ##. ..# ##.",
    "6": ".## #.. ### #.# ###",
    "7": "### ..# .#. .#. .#.",
    "8": "### #.# ### #.# ###",
    "9": "### #.# ### ..# ##.",
}


@functools.cache
def text_bitmap(text: str) -> np.ndarray:
    """``text`` in the font as a read-only ``(GLYPH_HEIGHT, GLYPH_WIDTH * len(text) - 1)`` float32 ink mask."""
    glyphs = [np.array([[c == "#" for c in row] for row in FONT[char].split()], dtype=np.float32) for char in text]
    blank = np.zeros((GLYPH_HEIGHT, 1), dtype=np.float32)
    bitmap = np.concatenate([part for glyph in glyphs for part in (glyph, blank)][:-1], axis=1)
    bitmap.flags.writeable = False
    return bitmap


def _cell_coverage(start: float, cells: int, resolution: int) -> tuple[slice, np.ndarray]:
    """The pixels (along one axis) a run of ``cells`` glyph cells from ``start`` touches, and the ``(pixels,
    cells)`` share of each pixel each cell covers: a box filter, crisp where cells and pixels align."""
    end = start + cells * GLYPH_CELL
    low, high = max(0, math.floor(start * resolution)), min(resolution, math.ceil(end * resolution))
    pixel_edges = np.arange(low, high + 1) / resolution
    cell_edges = start + np.arange(cells + 1) * GLYPH_CELL
    overlap = np.minimum(pixel_edges[1:, None], cell_edges[None, 1:]) - np.maximum(
        pixel_edges[:-1, None], cell_edges[None, :-1]
    )
    return slice(low, high), np.clip(overlap * resolution, 0.0, 1.0).astype(np.float32)


def _draw_text(image: np.ndarray, text: SceneText, resolution: int) -> None:
    bitmap = text_bitmap(text.text)  # (5, W) cells
    rows, row_weights = _cell_coverage(text.y, bitmap.shape[0], resolution)  # (h, 5)
    cols, col_weights = _cell_coverage(text.x, bitmap.shape[1], resolution)  # (w, W)
    coverage = (row_weights @ bitmap @ col_weights.T)[..., None]  # (h, w, 1)
    region = image[rows, cols]
    region += coverage * (np.asarray(INK, dtype=np.float32) - region)


def render(scene: Scene, resolution: int) -> np.ndarray:
    """The scene as ``(resolution, resolution, 3)`` uint8 RGB, anti-aliased by each pixel's signed distance
    (shapes) or covered area (glyph cells).

    Coordinates are pixel centres in image widths, so the drawing does not depend on the resolution; each shape
    is evaluated only in its bounding box.
    """
    centres = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution
    image = np.full((resolution, resolution, 3), scene.background, dtype=np.float32)
    for obj in scene.objects:
        half = EXTENT * obj.radius + 2 / resolution  # beyond it the coverage is exactly 0
        rows, cols = _pixel_span(obj.y, half, resolution), _pixel_span(obj.x, half, resolution)
        x, y = centres[None, cols], centres[rows, None]  # (1, w) and (h, 1), broadcast to (h, w)
        distance = SIGNED_DISTANCE[obj.shape](x - obj.x, y - obj.y, obj.radius)  # (h, w)
        coverage = np.clip(0.5 - distance * resolution, 0.0, 1.0)[..., None]  # (h, w, 1)
        region = image[rows, cols]
        region += coverage * (np.asarray(COLOURS[obj.colour], dtype=np.float32) - region)
    if scene.text is not None:
        _draw_text(image, scene.text, resolution)
    return np.rint(image).astype(np.uint8)


def _pixel_span(centre: float, half: float, resolution: int) -> slice:
    return slice(
        max(0, math.floor((centre - half) * resolution)), min(resolution, math.ceil((centre + half) * resolution))
    )


# -------------------------------------------------------------------------------------------- captions
DESCRIPTION_TOKENS = 24  # the longest ``describe`` output: fits a caption reference and a photo line
_PIECE = re.compile(r"<[a-z]+>|\n|[a-z]+|[0-9]+|[^\sa-z0-9]")  # the tokenizer's pieces


def token_count(text: str) -> int:
    """How many tokens the world's tokenizer makes of ``text`` (it cannot be imported here: it imports us)."""
    return len(_PIECE.findall(text))


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def count_phrase(count: int, noun: str = "shape") -> str:
    return f"{NUMBERS[count]} {noun}" + ("" if count == 1 else "s")


def join_phrases(phrases: list[str]) -> str:
    """``a``; ``a and b``; ``a, b and c``."""
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def text_phrase(text: SceneText) -> str:
    """``the word stop`` / ``the number 47``."""
    return f"the {'number' if text.is_number else 'word'} {text.text}"


def object_phrase(obj: WorldObject, rng: np.random.Generator, size_p: float = 0.5, position_p: float = 0.6) -> str:
    """``a small red circle on the left``; size and position each appear with their probability."""
    words = f"{obj.size} {obj.colour} {obj.shape}" if rng.random() < size_p else f"{obj.colour} {obj.shape}"
    phrase = with_article(words)
    return f"{phrase} {POSITION_PHRASES[obj.position]}" if rng.random() < position_p else phrase


def describe(scene: Scene, rng: np.random.Generator, text_p: float = 0.0) -> str:
    """The objects in reading order: ``a red circle on the left and a small blue square`` (no full stop); with
    probability ``text_p`` the writing too (``..., a blue square and the word stop``) where it fits in
    ``DESCRIPTION_TOKENS``."""
    phrases = [object_phrase(obj, rng) for obj in scene.objects]
    if scene.text is not None and rng.random() < text_p:
        with_text = join_phrases([*phrases, text_phrase(scene.text)])
        if token_count(with_text) <= DESCRIPTION_TOKENS:
            return with_text
    return join_phrases(phrases)


def _plain_caption(scene: Scene, rng: np.random.Generator) -> str:
    return describe(scene, rng, text_p=0.3) + "."


def _prefixed_caption(scene: Scene, rng: np.random.Generator) -> str:
    return f"{pick(rng, PREFIXES)} {describe(scene, rng, text_p=0.3)}."


def _tag_caption(scene: Scene, rng: np.random.Generator) -> str:
    tags = [f"{obj.colour} {obj.shape}" for obj in scene.objects]
    return ", ".join(tags + ([scene.text.text] if scene.text is not None and rng.random() < 0.5 else []))


def _counted_caption(scene: Scene, rng: np.random.Generator) -> str:
    return f"{count_phrase(len(scene.objects))}: {describe(scene, rng)}."


def _detailed_caption(scene: Scene, rng: np.random.Generator) -> str:
    phrases = [with_article(f"{obj.size} {obj.colour} {obj.shape}") for obj in scene.objects]
    return " ".join(
        f"{phrase} is {POSITION_PHRASES[obj.position]}." for phrase, obj in zip(phrases, scene.objects, strict=True)
    )


def _vague_caption(scene: Scene, rng: np.random.Generator) -> str:
    return pick(rng, VAGUE_CAPTIONS)  # alt-text that says nothing about the image


CAPTION_STYLES = (_plain_caption, _prefixed_caption, _tag_caption, _counted_caption, _detailed_caption, _vague_caption)


def web_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A short, noisy, web-like caption in one of several styles: plain, ``a photo of ...``, tags, counted,
    detailed, or vague alt-text; sizes, positions and the writing are often left out."""
    return CAPTION_STYLES[int(rng.integers(len(CAPTION_STYLES)))](scene, rng)


SYNTHETIC_OPENERS = ("a picture of", "an image of", "a drawing of")


def synthetic_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A rich, complete and accurate description (the VeCap analogue, MM1 Sec. 3.3 lesson 4): the count, every
    object with its size, colour, shape and position, and the writing. ``rng`` varies the phrasing only.

    ``a picture of two shapes. a small red circle is on the left and on the right is a large blue square. the
    word stop is written at the top.``
    """
    opener = f"{pick(rng, SYNTHETIC_OPENERS)} {count_phrase(len(scene.objects))}."
    inverted = rng.random() < 0.5
    phrases = []
    for obj in scene.objects:
        thing, where = with_article(f"{obj.size} {obj.colour} {obj.shape}"), POSITION_PHRASES[obj.position]
        phrases.append(f"{where} is {thing}" if inverted else f"{thing} is {where}")
    sentences = [opener, join_phrases(phrases) + "."]
    if scene.text is not None:
        sentences.append(f"{text_phrase(scene.text)} is written {POSITION_PHRASES[scene.text.position]}.")
    return " ".join(sentences)


def reference_captions(scene: Scene, rng: np.random.Generator, count: int = 5) -> list[str]:
    """``count`` human-like references for captioning evaluation: what follows ``a photo of``."""
    return [describe(scene, rng, text_p=0.5) for _ in range(count)]


def captioning_item(seed: int, split: Split, index: int, references: int = 5) -> tuple[Scene, list[str]]:
    """Item ``index`` of a captioning split: its scene and ``references`` captions of it."""
    rng = item_rng(seed, split, index)
    scene = sample_scene(rng)
    return scene, reference_captions(scene, rng, references)


# --------------------------------------------------------------------------------------- visual questions
VQA_ANSWERS = 10  # human answers per question, as in VQAv2
# Human answers that are neither the canonical answer nor one of its spellings (VQAv2 has both kinds of noise).
VAGUE_ANSWERS: dict[str, tuple[str, ...]] = {
    "counting": ("a few", "many"),
    "colour": ("dark", "bright"),
    "position": ("in the picture", "here"),
    "reading": ("a word", "letters"),
}
CONFUSED_COLOURS = {
    "red": ("orange", "purple"),
    "orange": ("red", "yellow"),
    "yellow": ("orange", "green"),
    "green": ("blue", "yellow"),
    "blue": ("purple", "green"),
    "purple": ("blue", "red"),
}


@dataclass(frozen=True)
class Question:
    """A question with one right answer in its scene; ``spellings`` are other right ways to say it, ``wrong``
    the mistakes a careless annotator makes."""

    text: str
    answer: str
    kind: str
    spellings: tuple[str, ...] = ()
    wrong: tuple[str, ...] = ()


def _unique(scene: Scene, key: Callable[[WorldObject], object]) -> list[WorldObject]:
    """The objects no other object of the scene shares ``key`` with."""
    counts = Counter(key(obj) for obj in scene.objects)
    return [obj for obj in scene.objects if counts[key(obj)] == 1]


def _count_question(text: str, count: int) -> Question:
    wrong = tuple(str(n) for n in (count - 1, count + 1) if n >= 0)  # off by one
    return Question(text, str(count), "counting", (NUMBERS[count],), wrong)


def _counting(scene: Scene, rng: np.random.Generator) -> Question | None:
    objects = scene.objects
    obj = objects[int(rng.integers(len(objects)))]
    choice = int(rng.integers(4))
    if choice == 0:
        count = sum(other.shape == obj.shape for other in objects)
        return _count_question(f"how many {obj.shape}s are there?", count)
    if choice == 1:
        count = sum(other.colour == obj.colour for other in objects)
        return _count_question(f"how many {obj.colour} shapes are there?", count)
    return _count_question("how many shapes are there?", len(objects))


def _colour(scene: Scene, rng: np.random.Generator) -> Question | None:
    obj = scene.objects[int(rng.integers(len(scene.objects)))]
    texts = [f"what colour is the shape {POSITION_PHRASES[obj.position]}?"]
    if obj in _unique(scene, lambda other: other.shape):
        texts.append(f"what colour is the {obj.shape}?")
    spellings = (f"dark {obj.colour}", f"light {obj.colour}")
    return Question(pick(rng, texts), obj.colour, "colour", spellings, CONFUSED_COLOURS[obj.colour])


def _position_question(text: str, position: str) -> Question:
    spellings = (POSITION_PHRASES[position],) + (("center",) if position == "center" else ())
    wrong = tuple(POSITION_ANSWERS[other] for other in POSITIONS if other != position)
    return Question(text, POSITION_ANSWERS[position], "position", spellings, wrong)


def _position(scene: Scene, rng: np.random.Generator) -> Question | None:
    options = [(f"where is the {obj.shape}?", obj.position) for obj in _unique(scene, lambda o: o.shape)]
    kinds = _unique(scene, lambda o: (o.colour, o.shape))
    options += [(f"where is the {obj.colour} {obj.shape}?", obj.position) for obj in kinds]
    if scene.text is not None:
        options.append((f"where is the {'number' if scene.text.is_number else 'word'} written?", scene.text.position))
    if not options:
        return None  # 2-3 identical shapes and no writing
    return _position_question(*options[int(rng.integers(len(options)))])


def _reading(scene: Scene, rng: np.random.Generator) -> Question | None:
    if scene.text is None:
        return None
    written = scene.text
    texts = ["what is written in the picture?", f"what is written {POSITION_PHRASES[written.position]}?"]
    texts.append("what number is written?" if written.is_number else "what word is written?")
    if written.is_number:
        value = int(written.text)
        spellings = (NUMBERS[value],) if value < len(NUMBERS) else ()
        misreads = (str(int(written.text[::-1])), str((value + 1) % 100))  # swapped digits, one off
        wrong = tuple(dict.fromkeys(w for w in misreads if w != written.text))
    else:
        spellings, wrong = (f"the word {written.text}",), tuple(w for w in LEXICON if w != written.text)
    return Question(pick(rng, texts), written.text, "reading", spellings, wrong)


QUESTION_KINDS: dict[str, Callable[[Scene, np.random.Generator], Question | None]] = {
    "counting": _counting,
    "colour": _colour,
    "position": _position,
    "reading": _reading,
}
VQA_KINDS = tuple(QUESTION_KINDS)


def ask(scene: Scene, rng: np.random.Generator, kind: str) -> Question | None:
    """A ``kind`` question about ``scene`` (one of ``VQA_KINDS``), or None where the scene has none (reading
    without writing; position among identical shapes)."""
    if kind not in QUESTION_KINDS:
        raise ValueError(f"unknown question kind {kind!r} (known: {', '.join(QUESTION_KINDS)})")
    return QUESTION_KINDS[kind](scene, rng)


def sample_question(scene: Scene, rng: np.random.Generator) -> Question:
    """A question of a kind drawn uniformly among those ``scene`` has (counting and colour always do)."""
    while True:
        question = ask(scene, rng, pick(rng, VQA_KINDS))
        if question is not None:
            return question


def human_answers(question: Question, rng: np.random.Generator) -> tuple[str, ...]:
    """``VQA_ANSWERS`` annotators' answers (VQAv2): 6-10 give the canonical answer, the rest another spelling
    (``two``, ``on the left``), a mistake, or something vague. The canonical answer is always the majority."""
    answers = [question.answer] * VQA_ANSWERS
    others = int(rng.binomial(4, 0.35))
    for slot in rng.permutation(VQA_ANSWERS)[:others]:
        draw = rng.random()
        if draw < 0.6 and question.spellings:
            answers[slot] = pick(rng, question.spellings)
        elif draw < 0.85 and question.wrong:
            answers[slot] = pick(rng, question.wrong)
        else:
            answers[slot] = pick(rng, VAGUE_ANSWERS[question.kind])
    return tuple(answers)


@dataclass(frozen=True)
class VQAItem:
    """A VQAv2-style item: a scene, a question about it, ten human answers, and the question's kind."""

    scene: Scene
    question: str
    answers: tuple[str, ...]
    kind: str

    @property
    def answer(self) -> str:
        """The canonical answer: the most common of ``answers``."""
        return Counter(self.answers).most_common(1)[0][0]


def _vqa_item(rng: np.random.Generator, kind: str) -> VQAItem:
    while True:  # the rare scene without a question of this kind is redrawn from the same stream
        scene = sample_scene(rng, text_p=1.0 if kind == "reading" else TEXT_P)
        question = ask(scene, rng, kind)
        if question is not None:
            return VQAItem(scene, question.text, human_answers(question, rng), kind)


def vqa_item(seed: int, split: Split, index: int) -> VQAItem:
    """Item ``index`` of a VQA split, its kind drawn uniformly from ``VQA_KINDS``; few-shot demonstrations are
    the items of ``Split.SUPPORT``. Equal to ``vqa_item_of_kind(seed, split, index, item.kind)``."""
    rng = item_rng(seed, split, index)
    return _vqa_item(rng, VQA_KINDS[int(rng.integers(len(VQA_KINDS)))])


def vqa_item_of_kind(seed: int, split: Split, index: int, kind: str) -> VQAItem:
    """Item ``index`` of the ``kind`` questions of a VQA split (per-kind sets: counting, reading text, ...);
    an unknown ``kind`` raises ``ValueError``."""
    rng = item_rng(seed, split, index)
    rng.integers(len(VQA_KINDS))  # the draw vqa_item makes for the kind, so both agree
    return _vqa_item(rng, kind)


def vqa_line(question: str, answer: str | None = None) -> str:
    """MM1's VQA prompt line, lower-cased: ``<image> question: {question} short answer: {answer}``; without an
    answer it ends after ``short answer:`` (the open end of a few-shot prompt)."""
    line = f"{IMAGE} question: {question} short answer:"
    return line if answer is None else f"{line} {answer}"


# ------------------------------------------------------------------------------------ interleaved documents
def photo_lines(scenes: tuple[Scene, ...], rng: np.random.Generator) -> str:
    """``<image> a photo of <caption>.`` per line: the exact structure of a few-shot captioning prompt."""
    return "".join(f"{IMAGE} a photo of {describe(scene, rng, text_p=0.5)}.\n" for scene in scenes)


def story(scenes: tuple[Scene, ...], rng: np.random.Generator) -> str:
    """An intro, each image with its caption, then a fact relating the images (counts across them)."""
    intro = pick(rng, STORY_INTROS).format(count=NUMBERS[len(scenes)])
    body = " ".join(f"{IMAGE} {web_caption(scene, rng)}" for scene in scenes)
    first, last = len(scenes[0].objects), len(scenes[-1].objects)
    total = sum(len(scene.objects) for scene in scenes)
    facts = f"the first picture has {count_phrase(first)} and the last has {count_phrase(last)}."
    if total < len(NUMBERS):
        facts += f" there are {NUMBERS[total]} shapes in all."
    return f"{intro}\n{body}\n{facts}"


def questions(scenes: tuple[Scene, ...], rng: np.random.Generator) -> str:
    """``<image> question: <q> short answer: <a>`` per line: the exact pattern of a few-shot VQA prompt, with the
    questions (counting, colour, position, reading) of the VQA evaluation sets."""
    return "".join(vqa_line(q.text, q.answer) + "\n" for q in (sample_question(scene, rng) for scene in scenes))


INTERLEAVED_STYLES = (photo_lines, story, questions)


# --------------------------------------------------------------------------------------- text-only sentences
def _mix_fact(rng: np.random.Generator) -> str:
    (first, second), result = list(COLOUR_MIXES.items())[int(rng.integers(len(COLOUR_MIXES)))]
    if rng.random() < 0.5:
        first, second = second, first
    return f"{first} and {second} make {result}."


def _shape_fact(rng: np.random.Generator) -> str:
    return pick(rng, SHAPE_FACTS[pick(rng, SHAPES)])


def _counting_run(rng: np.random.Generator) -> str:
    start, length = int(rng.integers(1, 7)), int(rng.integers(3, 5))
    return ", ".join(NUMBERS[start : start + length]) + "."


def number(value: int, as_digits: bool) -> str:
    return str(value) if as_digits else NUMBERS[value]


def _sum(rng: np.random.Generator) -> tuple[str, int]:
    """``three plus four is`` / ``7 minus 2 is`` (digits or words alike) and the result, at most ten."""
    as_digits = bool(rng.random() < 0.5)
    if rng.random() < 0.5:
        first = int(rng.integers(1, 6))
        second = int(rng.integers(1, 11 - first))
        return f"{number(first, as_digits)} plus {number(second, as_digits)} is", first + second
    first = int(rng.integers(2, 11))
    second = int(rng.integers(1, first + 1))
    return f"{number(first, as_digits)} minus {number(second, as_digits)} is", first - second


def _arithmetic(rng: np.random.Generator) -> str:
    context, result = _sum(rng)
    return f"{context} {number(result, context[0].isdigit())}."


def _number_fact(rng: np.random.Generator) -> str:
    value = int(rng.integers(len(NUMBERS)))
    return f"{NUMBERS[value]} is {value}."


def _imagined_scene(rng: np.random.Generator) -> str:
    """``imagine a red circle and a blue square. there are two shapes.``"""
    scene = sample_scene(rng)
    count = len(scene.objects)
    return f"imagine {describe(scene, rng)}. there {'is' if count == 1 else 'are'} {count_phrase(count)}."


def _listing(rng: np.random.Generator) -> str:
    kind, names = (("colours", tuple(COLOURS)), ("shapes", SHAPES))[int(rng.integers(2))]
    chosen = [names[i] for i in rng.permutation(len(names))[: int(rng.integers(2, 4))]]
    return f"the {kind} are {join_phrases(chosen)}."


TEXT_SENTENCES = (_mix_fact, _shape_fact, _counting_run, _arithmetic, _number_fact, _imagined_scene, _listing)


# ----------------------------------------------------------------------------------------- text evaluation
@dataclass(frozen=True)
class TextItem:
    """A multiple-choice cloze item: ``choices[answer]`` is the right continuation of ``context`` (the scored text
    is ``f"{context} {choice}"``); ``kind`` is one of ``TEXT_EVAL_KINDS``."""

    context: str
    choices: tuple[str, ...]
    answer: int
    kind: str = ""


def _choices(rng: np.random.Generator, right: str, wrong: Sequence[str], count: int = 4) -> tuple[tuple[str, ...], int]:
    """``right`` among ``count - 1`` of ``wrong``, shuffled; and where ``right`` went."""
    distractors = [wrong[i] for i in rng.permutation(len(wrong))[: count - 1]]
    choices = [right, *distractors]
    order = rng.permutation(len(choices))
    return tuple(choices[i] for i in order), int(np.flatnonzero(order == 0)[0])


def _mixing_item(rng: np.random.Generator) -> TextItem:
    (first, second), result = list(COLOUR_MIXES.items())[int(rng.integers(len(COLOUR_MIXES)))]
    if rng.random() < 0.5:
        first, second = second, first
    choices, answer = _choices(rng, result, [c for c in COLOURS if c != result])
    return TextItem(f"{first} and {second} make", choices, answer, "mixing")


def _sides_item(rng: np.random.Generator) -> TextItem:
    shape = pick(rng, tuple(SIDES))
    right = NUMBERS[SIDES[shape]]
    choices, answer = _choices(rng, right, [n for n in NUMBERS[2:7] if n != right])
    return TextItem(f"{with_article(shape)} has", choices, answer, "sides")


def _near_numbers(value: int, as_digits: bool) -> list[str]:
    """The four numbers nearest ``value`` (0-20), the likeliest slips."""
    near = sorted((n for n in range(len(NUMBERS)) if n != value), key=lambda n: (abs(n - value), n))[:4]
    return [number(n, as_digits) for n in near]


def _arithmetic_item(rng: np.random.Generator) -> TextItem:
    context, result = _sum(rng)
    as_digits = context[0].isdigit()
    choices, answer = _choices(rng, number(result, as_digits), _near_numbers(result, as_digits))
    return TextItem(context, choices, answer, "arithmetic")


def _counting_item(rng: np.random.Generator) -> TextItem:
    if rng.random() < 0.5:  # continue a count: ``three, four, five,`` -> ``six``
        start = int(rng.integers(1, 7))
        context = ", ".join(NUMBERS[start : start + 3]) + ","
        right = start + 3
    else:  # count an imagined scene's shapes
        scene = sample_scene(rng)
        right = len(scene.objects)
        context = f"imagine {describe(scene, rng)}. there {'is' if right == 1 else 'are'}"
    choices, answer = _choices(rng, NUMBERS[right], _near_numbers(right, as_digits=False))
    return TextItem(context, choices, answer, "counting")


TEXT_EVAL_KINDS: dict[str, Callable[[np.random.Generator], TextItem]] = {
    "mixing": _mixing_item,
    "sides": _sides_item,
    "arithmetic": _arithmetic_item,
    "counting": _counting_item,
}


def text_eval_item(seed: int, index: int, split: Split = Split.TEXT_EVAL) -> TextItem:
    """Item ``index`` of the text-only multiple-choice set: colour mixing, shape sides, arithmetic and counting,
    each answerable from the facts of the text-only documents; ``Split.TEXT_SUPPORT`` gives demonstrations."""
    rng = item_rng(seed, split, index)
    kind = pick(rng, tuple(TEXT_EVAL_KINDS))
    return TEXT_EVAL_KINDS[kind](rng)


# -------------------------------------------------------------------------------------------- documents
TEXT_DOCUMENT_TOKENS = 138  # a text-only document's longest text (datamodule's bound, less <bos>/<eos>)


def caption_document(rng: np.random.Generator, max_images: int, synthetic: bool = False) -> Document:
    """An image-caption pair: ``<image> <caption>``, a web caption or (``synthetic``) a rich synthetic one."""
    scene = sample_scene(rng)
    caption = synthetic_caption(scene, rng) if synthetic else web_caption(scene, rng)
    return Document(f"{IMAGE} {caption}", (scene,), "caption")


def interleaved_document(rng: np.random.Generator, max_images: int) -> Document:
    """2..``max_images`` images with related text, in one of the interleaved styles."""
    count = int(rng.integers(min(2, max_images), max_images + 1))
    scenes = tuple(sample_scene(rng) for _ in range(count))
    style = INTERLEAVED_STYLES[int(rng.integers(len(INTERLEAVED_STYLES)))]
    return Document(style(scenes, rng).rstrip("\n"), scenes, "interleaved")


def text_document(rng: np.random.Generator, max_images: int) -> Document:
    """3-5 sentences about the world (colour mixing, shapes, counting, arithmetic, imagined scenes), as many as
    fit in ``TEXT_DOCUMENT_TOKENS``."""
    sentences: list[str] = []
    for _ in range(int(rng.integers(3, 6))):
        sentence = TEXT_SENTENCES[int(rng.integers(len(TEXT_SENTENCES)))](rng)
        if token_count(" ".join([*sentences, sentence])) <= TEXT_DOCUMENT_TOKENS:
            sentences.append(sentence)
    return Document(" ".join(sentences), (), "text")


# stream name -> sampler(rng, max_images, **options); options: caption_document's ``synthetic``
DOCUMENT_SAMPLERS: dict[str, Callable[..., Document]] = {
    "caption": caption_document,
    "interleaved": interleaved_document,
    "text": text_document,
}


def pretraining_document(
    seed: int,
    index: int,
    mixture: Mapping[str, float],
    max_images: int,
    split: Split = Split.TRAIN,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Document:
    """Pre-training item ``index``: its kind drawn by the ``mixture`` weights (MM1 Sec. 3.3), then its content;
    ``options[kind]`` goes to that kind's sampler (``{"caption": {"synthetic": True}}``)."""
    rng = item_rng(seed, split, index)
    weights = np.array([mixture.get(kind, 0.0) for kind in SAMPLE_KINDS], dtype=np.float64)
    kind = SAMPLE_KINDS[int(rng.choice(len(SAMPLE_KINDS), p=weights / weights.sum()))]
    return DOCUMENT_SAMPLERS[kind](rng, max_images, **(options or {}).get(kind, {}))


# ------------------------------------------------------------------------------------- instruction data (SFT)
# Supervised fine-tuning (MM1 Sec. 5) turns the pre-trained model into one that follows instructions. The world's
# instruction set is LLaVA-1.5-like: short questions carry a format instruction ("answer in one word."), a
# caption request asks for a short answer, a detail request for a complete description. Every word is already in
# ``VOCABULARY`` (the tokenizer's vocabulary is fixed), so these sentences are deliberately not added to it.
INSTRUCTION_KINDS = ("short", "conversation", "detail")  # the fields of config.SFTMixConfig
ONE_WORD = "answer in one word."  # appended to a question whose answer is a single word or number
CAPTION_REQUEST = "what is in this picture? answer in short."  # answered by a short caption
DETAIL_REQUESTS = (
    "look at this picture. what is there and where?",
    "what is in this image? look at all of the shapes.",
    "what shapes are there in this picture, and where?",
)
CAPTION_REQUEST_P = 0.2  # share of short turns that ask for a caption rather than a question
CONVERSATION_TURNS = (2, 4)  # turns of a conversation, inclusive


@dataclass(frozen=True)
class InstructionItem:
    """An instruction-following item about one scene: ``turns`` of ``(instruction, response)`` (no ``<image>``:
    the chat template places it), ``kind`` one of ``INSTRUCTION_KINDS``."""

    scene: Scene
    turns: tuple[tuple[str, str], ...]
    kind: str


def _shape(scene: Scene, rng: np.random.Generator) -> Question | None:
    """``what shape is on the left?`` / ``what shape is the red shape?`` (when no other shape is red)."""
    obj = scene.objects[int(rng.integers(len(scene.objects)))]
    texts = [f"what shape is {POSITION_PHRASES[obj.position]}?"]
    if obj in _unique(scene, lambda other: other.colour):
        texts.append(f"what shape is the {obj.colour} shape?")
    return Question(pick(rng, texts), obj.shape, "shape")


INSTRUCTION_QUESTIONS: dict[str, Callable[[Scene, np.random.Generator], Question | None]] = {
    **QUESTION_KINDS,
    "shape": _shape,
}


def short_turn(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """A caption request answered by a short description, or a question of any kind the scene has answered in
    one word (its canonical answer)."""
    if rng.random() < CAPTION_REQUEST_P:
        return CAPTION_REQUEST, describe(scene, rng, text_p=0.5) + "."
    while True:
        question = INSTRUCTION_QUESTIONS[pick(rng, tuple(INSTRUCTION_QUESTIONS))](scene, rng)
        if question is not None:
            return f"{question.text} {ONE_WORD}", question.answer


def detailed_description(scene: Scene) -> str:
    """A complete description, richer than any caption: the count, every object with its size, colour, shape and
    position in reading order, the colours and shapes that repeat, and the writing (or that there is none).

    ``there are two shapes in this picture. a large red square is at the top. a small red circle is on the
    left. all the shapes are red. the word stop is written at the bottom.``
    """
    count = len(scene.objects)
    sentences = [f"there {'is' if count == 1 else 'are'} {count_phrase(count)} in this picture."]
    for obj in scene.objects:
        sentences.append(f"{with_article(f'{obj.size} {obj.colour} {obj.shape}')} is {POSITION_PHRASES[obj.position]}.")
    for value, plural in [(c, c) for c in COLOURS] + [(s, f"{s}s") for s in SHAPES]:
        same = sum(value in (obj.colour, obj.shape) for obj in scene.objects)
        if same == count > 1:
            sentences.append(f"all the shapes are {plural}.")
        elif same > 1:
            sentences.append(f"{NUMBERS[same]} of the shapes are {plural}.")
    if scene.text is None:
        sentences.append("no word and no number is written.")
    else:
        sentences.append(f"{text_phrase(scene.text)} is written {POSITION_PHRASES[scene.text.position]}.")
    return " ".join(sentences)


def _short_item(scene: Scene, rng: np.random.Generator) -> tuple[tuple[str, str], ...]:
    return (short_turn(scene, rng),)


def _conversation_item(scene: Scene, rng: np.random.Generator) -> tuple[tuple[str, str], ...]:
    """2-4 short turns about the scene with distinct instructions (a scene may have fewer distinct ones)."""
    wanted = int(rng.integers(CONVERSATION_TURNS[0], CONVERSATION_TURNS[1] + 1))
    turns: dict[str, str] = {}
    for _ in range(8 * wanted):
        instruction, response = short_turn(scene, rng)
        turns.setdefault(instruction, response)
        if len(turns) == wanted:
            break
    return tuple(turns.items())


def _detail_item(scene: Scene, rng: np.random.Generator) -> tuple[tuple[str, str], ...]:
    return ((pick(rng, DETAIL_REQUESTS), detailed_description(scene)),)


INSTRUCTION_SAMPLERS: dict[str, Callable[[Scene, np.random.Generator], tuple[tuple[str, str], ...]]] = {
    "short": _short_item,
    "conversation": _conversation_item,
    "detail": _detail_item,
}


def instruction_item(seed: int, index: int, mix: Mapping[str, float], split: Split = Split.SFT) -> InstructionItem:
    """Item ``index`` of an instruction split (``Split.SFT`` to train on, ``Split.SFT_EVAL`` held out): its kind
    drawn by the ``mix`` weights of ``INSTRUCTION_KINDS``, then a scene and the turns about it."""
    rng = item_rng(seed, split, index)
    weights = np.array([mix.get(kind, 0.0) for kind in INSTRUCTION_KINDS], dtype=np.float64)
    kind = INSTRUCTION_KINDS[int(rng.choice(len(INSTRUCTION_KINDS), p=weights / weights.sum()))]
    scene = sample_scene(rng)
    return InstructionItem(scene, INSTRUCTION_SAMPLERS[kind](scene, rng), kind)


# ------------------------------------------------------------------------------------------- vocabulary
_WORD = re.compile(r"[a-z]+|[0-9]+")


def _vocabulary() -> tuple[str, ...]:
    """Every word and number the generators above can write (tests check sampled text never leaves it)."""
    texts = [
        *COLOURS,
        *SHAPES,
        *(f"{shape}s" for shape in SHAPES),
        *SIZES,
        *POSITIONS,
        *POSITION_PHRASES.values(),
        *POSITION_ANSWERS.values(),
        *NUMBERS,
        *(str(value) for value in range(100)),
        *LEXICON,
        *(fact for facts in SHAPE_FACTS.values() for fact in facts),
        *PREFIXES,
        *VAGUE_CAPTIONS,
        *STORY_INTROS,
        *SYNTHETIC_OPENERS,
        *(answer for answers in VAGUE_ANSWERS.values() for answer in answers),
        "a an and is are the of make plus minus imagine colour colours shape shapes in all there",
        "question short answer how many what where first last has pictures picture",
        "word number written dark light",
    ]
    return tuple(sorted({word for text in texts for word in _WORD.findall(text.replace("{count}", ""))}))


VOCABULARY: tuple[str, ...] = _vocabulary()
