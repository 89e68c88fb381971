"""The embedded world v1: a seeded, procedurally generated world of coloured shapes (numpy only, no torch).

A *scene* holds 1-3 objects; each has a colour, a shape, a size and a position (the slot its centre is in).
``render`` draws a scene at any resolution from coordinate grids and signed distances, so one scene renders
alike at 32, 64 or 128 px (small shapes become hard to tell apart at low resolution, as in MM1 Sec. 3.2).

Every item is index-addressed: item ``i`` of split ``s`` comes from ``np.random.default_rng([seed, s, i])``,
so any item is random-access and the splits never share a random stream. Pre-training documents come in the
three kinds of MM1 Sec. 3.3 (Fig. 5): caption pairs, interleaved image-text documents (including the
``<image> a photo of <caption>`` pattern few-shot prompts have) and text-only documents about the world.
Text is lower case over a closed vocabulary (``VOCABULARY``); ``<image>`` marks where an image goes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from mm1core.data.records import IMAGE, Document

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 20),
    "purple": (135, 55, 185),
    "orange": (240, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES: dict[str, float] = {"small": 0.085, "large": 0.14}  # half-extent, in image widths
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
PREFIXES = ("a photo of", "a picture of", "an image of", "a drawing of", "photo of")
STORY_INTROS = ("here are {count} pictures.", "my {count} drawings.", "look at these {count} pictures.")
SAMPLE_KINDS = ("caption", "interleaved", "text")


class Split(IntEnum):
    """Random-stream ids: items of different splits never share a stream, so the splits never overlap."""

    TRAIN = 1
    EVAL = 2
    SUPPORT = 3  # few-shot demonstrations
    DEMO_CHOICE = 4  # which support items a k-shot prompt uses


@dataclass(frozen=True)
class WorldObject:
    """One shape: ``x, y`` is its centre and ``radius`` its half-extent, both in image widths."""

    colour: str
    shape: str
    size: str
    position: str
    x: float
    y: float

    @property
    def radius(self) -> float:
        return SIZES[self.size]


@dataclass(frozen=True)
class Scene:
    """1-3 objects on a plain grey background (``background`` is one grey level)."""

    objects: tuple[WorldObject, ...]
    background: int


def item_rng(seed: int, split: Split, index: int) -> np.random.Generator:
    """The random stream of item ``index`` of ``split``: any item is generated alone, in any order."""
    return np.random.default_rng([seed, int(split), index])


def pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


# ----------------------------------------------------------------------------------------------- scenes
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


def sample_scene(rng: np.random.Generator) -> Scene:
    """1-3 objects in distinct position slots, in reading order, on a light grey background."""
    count = int(rng.integers(1, 4))
    slots = np.sort(rng.permutation(len(POSITIONS))[:count])
    names = tuple(POSITIONS)
    objects = tuple(sample_object(rng, names[slot]) for slot in slots)
    return Scene(objects, background=int(rng.integers(200, 250)))


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


def render(scene: Scene, resolution: int) -> np.ndarray:
    """The scene as ``(resolution, resolution, 3)`` uint8 RGB, anti-aliased by each pixel's signed distance.

    Coordinates are pixel centres in image widths, so the drawing does not depend on the resolution.
    """
    centres = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution
    x, y = centres[None, :], centres[:, None]  # (1, R) and (R, 1), broadcast to (R, R)
    image = np.full((resolution, resolution, 3), scene.background, dtype=np.float32)
    for obj in scene.objects:
        distance = SIGNED_DISTANCE[obj.shape](x - obj.x, y - obj.y, obj.radius)  # (R, R)
        coverage = np.clip(0.5 - distance * resolution, 0.0, 1.0)[..., None]  # (R, R, 1)
        image += coverage * (np.asarray(COLOURS[obj.colour], dtype=np.float32) - image)
    return np.rint(image).astype(np.uint8)


# -------------------------------------------------------------------------------------------- captions
def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def count_phrase(count: int, noun: str = "shape") -> str:
    return f"{NUMBERS[count]} {noun}" + ("" if count == 1 else "s")


def join_phrases(phrases: list[str]) -> str:
    """``a``; ``a and b``; ``a, b and c``."""
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def object_phrase(obj: WorldObject, rng: np.random.Generator, size_p: float = 0.5, position_p: float = 0.6) -> str:
    """``a small red circle on the left``; size and position each appear with their probability."""
    words = f"{obj.size} {obj.colour} {obj.shape}" if rng.random() < size_p else f"{obj.colour} {obj.shape}"
    phrase = with_article(words)
    return f"{phrase} {POSITION_PHRASES[obj.position]}" if rng.random() < position_p else phrase


def describe(scene: Scene, rng: np.random.Generator) -> str:
    """The objects in reading order: ``a red circle on the left and a small blue square`` (no full stop)."""
    return join_phrases([object_phrase(obj, rng) for obj in scene.objects])


def _plain_caption(scene: Scene, rng: np.random.Generator) -> str:
    return describe(scene, rng) + "."


def _prefixed_caption(scene: Scene, rng: np.random.Generator) -> str:
    return f"{pick(rng, PREFIXES)} {describe(scene, rng)}."


def _tag_caption(scene: Scene, rng: np.random.Generator) -> str:
    return ", ".join(f"{obj.colour} {obj.shape}" for obj in scene.objects)


def _counted_caption(scene: Scene, rng: np.random.Generator) -> str:
    return f"{count_phrase(len(scene.objects))}: {describe(scene, rng)}."


def _detailed_caption(scene: Scene, rng: np.random.Generator) -> str:
    phrases = [with_article(f"{obj.size} {obj.colour} {obj.shape}") for obj in scene.objects]
    return " ".join(
        f"{phrase} is {POSITION_PHRASES[obj.position]}." for phrase, obj in zip(phrases, scene.objects, strict=True)
    )


CAPTION_STYLES = (_plain_caption, _prefixed_caption, _tag_caption, _counted_caption, _detailed_caption)


def web_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A noisy, web-like caption in one of several styles (plain, "a photo of ...", tags, counted, detailed)."""
    return CAPTION_STYLES[int(rng.integers(len(CAPTION_STYLES)))](scene, rng)


def reference_captions(scene: Scene, rng: np.random.Generator, count: int = 5) -> list[str]:
    """``count`` human-like references for captioning evaluation: what follows ``a photo of``."""
    return [describe(scene, rng) for _ in range(count)]


def captioning_item(seed: int, split: Split, index: int, references: int = 5) -> tuple[Scene, list[str]]:
    """Item ``index`` of a captioning split: its scene and ``references`` captions of it."""
    rng = item_rng(seed, split, index)
    scene = sample_scene(rng)
    return scene, reference_captions(scene, rng, references)


# ------------------------------------------------------------------------------------ interleaved documents
def photo_lines(scenes: tuple[Scene, ...], rng: np.random.Generator) -> str:
    """``<image> a photo of <caption>.`` per line: the exact structure of a few-shot captioning prompt."""
    return "".join(f"{IMAGE} a photo of {describe(scene, rng)}.\n" for scene in scenes)


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


def question_answers(scene: Scene, obj: WorldObject) -> list[tuple[str, str]]:
    """The VQA-style questions about ``obj`` that have one right answer in ``scene``, with their answers."""
    same_shape = sum(other.shape == obj.shape for other in scene.objects)
    same_kind = sum(other.shape == obj.shape and other.colour == obj.colour for other in scene.objects)
    candidates = [("how many shapes are there?", NUMBERS[len(scene.objects)])]
    candidates.append((f"what shape is {POSITION_PHRASES[obj.position]}?", obj.shape))
    if same_shape == 1:
        candidates.append((f"what colour is the {obj.shape}?", obj.colour))
    if same_kind == 1:
        candidates.append((f"where is the {obj.colour} {obj.shape}?", POSITION_ANSWERS[obj.position]))
    return candidates


def questions(scenes: tuple[Scene, ...], rng: np.random.Generator) -> str:
    """``<image> question: <q> answer: <a>`` per line (the repeated Q/A pattern of few-shot VQA prompts)."""
    lines = []
    for scene in scenes:
        candidates = question_answers(scene, scene.objects[int(rng.integers(len(scene.objects)))])
        question, answer = candidates[int(rng.integers(len(candidates)))]
        lines.append(f"{IMAGE} question: {question} answer: {answer}\n")
    return "".join(lines)


INTERLEAVED_STYLES = (photo_lines, story, questions)


# --------------------------------------------------------------------------------------- text-only sentences
def _mix_fact(rng: np.random.Generator) -> str:
    (first, second), result = list(COLOUR_MIXES.items())[int(rng.integers(len(COLOUR_MIXES)))]
    if rng.random() < 0.5:
        first, second = second, first
    return f"{first} and {second} make {result}."


def _shape_fact(rng: np.random.Generator) -> str:
    return pick(rng, SHAPE_FACTS[pick(rng, SHAPES)])


def _counting(rng: np.random.Generator) -> str:
    start, length = int(rng.integers(1, 7)), int(rng.integers(3, 5))
    return ", ".join(NUMBERS[start : start + length]) + "."


def _addition(rng: np.random.Generator) -> str:
    first = int(rng.integers(1, 6))
    second = int(rng.integers(1, 11 - first))
    return f"{NUMBERS[first]} plus {NUMBERS[second]} is {NUMBERS[first + second]}."


def _imagined_scene(rng: np.random.Generator) -> str:
    return f"imagine {describe(sample_scene(rng), rng)}."


def _listing(rng: np.random.Generator) -> str:
    kind, names = (("colours", tuple(COLOURS)), ("shapes", SHAPES))[int(rng.integers(2))]
    chosen = [names[i] for i in rng.permutation(len(names))[: int(rng.integers(2, 4))]]
    return f"the {kind} are {join_phrases(chosen)}."


TEXT_SENTENCES = (_mix_fact, _shape_fact, _counting, _addition, _imagined_scene, _listing)


# -------------------------------------------------------------------------------------------- documents
def caption_document(rng: np.random.Generator, max_images: int) -> Document:
    """An image-caption pair: ``<image> <web caption>``."""
    scene = sample_scene(rng)
    return Document(f"{IMAGE} {web_caption(scene, rng)}", (scene,), "caption")


def interleaved_document(rng: np.random.Generator, max_images: int) -> Document:
    """2..``max_images`` images with related text, in one of the interleaved styles."""
    count = int(rng.integers(min(2, max_images), max_images + 1))
    scenes = tuple(sample_scene(rng) for _ in range(count))
    style = INTERLEAVED_STYLES[int(rng.integers(len(INTERLEAVED_STYLES)))]
    return Document(style(scenes, rng).rstrip("\n"), scenes, "interleaved")


def text_document(rng: np.random.Generator, max_images: int) -> Document:
    """3-5 sentences of facts about the world: colour mixing, shapes, counting, imagined scenes."""
    count = int(rng.integers(3, 6))
    sentences = [TEXT_SENTENCES[int(rng.integers(len(TEXT_SENTENCES)))](rng) for _ in range(count)]
    return Document(" ".join(sentences), (), "text")


DOCUMENT_SAMPLERS: dict[str, Callable[[np.random.Generator, int], Document]] = {
    "caption": caption_document,
    "interleaved": interleaved_document,
    "text": text_document,
}


def pretraining_document(
    seed: int, index: int, mixture: Mapping[str, float], max_images: int, split: Split = Split.TRAIN
) -> Document:
    """Pre-training item ``index``: its kind drawn by the ``mixture`` weights (MM1 Sec. 3.3), then its content."""
    rng = item_rng(seed, split, index)
    weights = np.array([mixture.get(kind, 0.0) for kind in SAMPLE_KINDS], dtype=np.float64)
    kind = SAMPLE_KINDS[int(rng.choice(len(SAMPLE_KINDS), p=weights / weights.sum()))]
    return DOCUMENT_SAMPLERS[kind](rng, max_images)


# ------------------------------------------------------------------------------------------- vocabulary
_WORD = re.compile(r"[a-z]+")


def _vocabulary() -> tuple[str, ...]:
    """Every word the generators above can write (tests check that sampled text never leaves it)."""
    texts = [
        *COLOURS,
        *SHAPES,
        *(f"{shape}s" for shape in SHAPES),
        *SIZES,
        *POSITION_PHRASES.values(),
        *POSITION_ANSWERS.values(),
        *NUMBERS,
        *(fact for facts in SHAPE_FACTS.values() for fact in facts),
        *PREFIXES,
        *STORY_INTROS,
        "a an and is are the of make plus imagine colour colours shape shapes in all there",
        "question answer how many what where first last has pictures picture",
    ]
    return tuple(sorted({word for text in texts for word in _WORD.findall(text.replace("{count}", ""))}))


VOCABULARY: tuple[str, ...] = _vocabulary()
