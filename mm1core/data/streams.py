"""One pre-training stream (caption, interleaved or text) as an endless, random-access sequence of documents.

A synthetic stream generates document ``k`` of the embedded world from its own random stream (seed, stream,
``k``): train items never share a random stream with evaluation items. A stream read from disk visits the
records of its ``Source`` epoch by epoch, each epoch in a fresh seeded order; document ``k`` is the
``k % len``-th record of epoch ``k // len``. Text corpora outside the mixture's streams (``TEXT_CORPORA``: the
stage-0 corpus, ``mm1core.data.corpus``) are synthetic streams a stage opens by name, in its ``text`` slot.
Torch-free.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol

import numpy as np

from mm1core.data.corpus import CORPUS, CorpusStream
from mm1core.data.records import STREAMS, Document
from mm1core.data.world import DOCUMENT_SAMPLERS, Split


class Stream(Protocol):
    name: str

    def document(self, index: int) -> Document:
        """Document ``index`` (any ``index >= 0``); may raise ``BadRecord``."""
        ...


class SyntheticStream:
    """The embedded world's documents of one stream (``caption`` documents optionally VeCap-style)."""

    def __init__(
        self, name: str, seed: int, max_images: int, synthetic_captions: bool = False, synthetic_share: float = 0.5
    ) -> None:
        self.name, self.seed, self.max_images = name, seed, max_images
        self.synthetic_share = synthetic_share if synthetic_captions else 0.0
        self.sampler = DOCUMENT_SAMPLERS[name]

    def document(self, index: int) -> Document:
        # A trailing non-zero entry: numpy seeds [a, b, 0] and [a, b] alike, which would make document 0 of a
        # stream another generator's item.
        key = [self.seed, int(Split.TRAIN), 100 + STREAMS.index(self.name), index, 1]
        if self.name != "caption":
            return self.sampler(np.random.default_rng(key), self.max_images)
        # Whether the caption is synthetic comes from a random stream of its own, so the image (and the web
        # caption it would otherwise get) does not depend on the share: matched comparisons of Fig. 5d.
        if np.random.default_rng([*key[:-1], 2]).random() < self.synthetic_share:
            return self.sampler(np.random.default_rng(key), self.max_images, synthetic=True)
        return self.sampler(np.random.default_rng(key), self.max_images)


class FileStream:
    """A ``Source`` on disk, epoch after epoch, each epoch in its own seeded permutation."""

    def __init__(self, name: str, source, seed: int) -> None:  # noqa: ANN001 - a mm1core.data.formats.Source
        self.name, self.source, self.seed = name, source, seed
        self.length = len(source)
        if self.length == 0:
            raise ValueError(f"data source for {name} has no records: {source.describe()}")

    @functools.lru_cache(maxsize=2)  # noqa: B019 - the current and the next epoch
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, STREAMS.index(self.name), epoch]).permutation(self.length)

    def document(self, index: int) -> Document:
        epoch, position = divmod(index, self.length)
        return self.source.document(int(self._order(epoch)[position]))


# name -> builder(seed) of a synthetic text-only stream outside STREAMS (``{"text": open_stream("corpus", ...)}``)
TEXT_CORPORA: dict[str, Callable[[int], Stream]] = {CORPUS: CorpusStream}


def open_stream(name: str, where: str, *, seed: int, max_images: int, synthetic_captions: bool, share: float) -> Stream:
    """The stream ``name`` read from ``where`` (``synthetic`` or a path, see ``mm1core.data.formats``); a name of
    ``TEXT_CORPORA`` is synthetic only."""
    if name in TEXT_CORPORA:
        if where != "synthetic":
            raise ValueError(f"{name}: a synthetic corpus, not read from {where!r} (a text file is the text stream)")
        return TEXT_CORPORA[name](seed)
    if where == "synthetic":
        return SyntheticStream(name, seed, max_images, synthetic_captions, share)
    from mm1core.data.formats import open_source

    return FileStream(name, open_source(name, where), seed)
