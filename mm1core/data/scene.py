"""What a scene of the embedded world is (``mm1core.data.world`` makes, renders and describes them): 1-3 shapes
and optionally a short text on a grey background. Plain frozen dataclasses, numpy-free: a ``Document``'s images
(``mm1core.data.records``) may be scenes.
"""

from __future__ import annotations

from dataclasses import dataclass

SIZES: dict[str, float] = {"small": 0.085, "large": 0.14}  # half-extent, in image widths


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
class SceneText:
    """A word or number written in a free position slot; ``x, y`` is the top-left corner of its glyph grid, in
    image widths, on the grid of ``world.GLYPH_CELL`` (so strokes fall on whole pixels at 64 and 128 px)."""

    text: str
    position: str
    x: float
    y: float

    @property
    def is_number(self) -> bool:
        return self.text.isdigit()


@dataclass(frozen=True)
class Scene:
    """1-3 objects and optionally a text on a plain grey background (``background`` is one grey level)."""

    objects: tuple[WorldObject, ...]
    background: int
    text: SceneText | None = None
