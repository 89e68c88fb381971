"""What every data source yields (torch-free): documents whose text holds one ``<image>`` per image.

An image is either a ``Scene`` of the embedded world (rendered at whatever resolution a trial asks for) or an
``EncodedImage`` read from a user's files (JPEG/PNG/... bytes, decoded and resized when a sample is built).
A record that cannot be read raises ``BadRecord``: the data pipeline skips and counts it, never the trial.
"""

from __future__ import annotations

from dataclasses import dataclass

from mm1core.data.scene import Scene

IMAGE = "<image>"
STREAMS = ("caption", "interleaved", "text")  # MM1 Sec. 3.3: the three kinds of pre-training data


class BadRecord(Exception):
    """A record (an image, a line, a shard member) that cannot be turned into a document; the message says
    where it is and why."""


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes and where they came from (``shard.tar:key.jpg``, a path) for error messages."""

    data: bytes
    origin: str


ImageLike = Scene | EncodedImage


@dataclass(frozen=True)
class Document:
    """A text with one ``<image>`` per entry of ``images``, in order. ``kind`` is a stream of ``STREAMS`` or
    ``"prompt"`` (an evaluation prompt)."""

    text: str
    images: tuple[ImageLike, ...]
    kind: str
