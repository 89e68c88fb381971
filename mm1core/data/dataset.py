"""Token and image tensors for training and evaluation: the training rows a ``RowPlanner`` plans, and collate.

A document's text becomes ``<bos> ... <eos>`` ids in which every ``<image>`` is expanded into ``num_tokens``
copies of the image token id: the positions the model later fills with that image's connector outputs
(MM1 Sec. 3.2). The loss mask marks the tokens that are prediction *targets*: text tokens only, never image
tokens, ``<bos>`` or padding.

Shapes (``T`` tokens, ``n`` images in a sample, ``N`` images in a batch, ``R`` the resolution):
- ``Sample``: ``token_ids`` (T,) int64, ``loss_mask`` (T,) bool, ``images`` (n, 3, R, R) float32 in [-1, 1].
- ``Batch``: ``token_ids`` (B, T_max) right-padded with ``<pad>``, ``loss_mask`` (B, T_max), ``images``
  (N, 3, R, R) flat, in the order the images appear in the batch read row by row, ``image_counts`` (B,),
  ``streams`` (B,) and ``skipped`` (B,) (what the trial logs as ``data/share/<stream>`` and ``data/skipped``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from mm1core.data.images import to_pixels
from mm1core.data.records import STREAMS, BadRecord, Document
from mm1core.data.sampler import MAX_CONSECUTIVE_BAD, RowPlan
from mm1core.data.streams import Stream
from mm1core.data.tokenizer import TextTokenizer


class Sample(TypedDict, total=False):
    token_ids: torch.Tensor  # (T,) int64
    loss_mask: torch.Tensor  # (T,) bool: the token is a loss target
    images: torch.Tensor  # (n, 3, R, R) float32 in [-1, 1]
    stream: int  # training rows: index in STREAMS of the stream the row comes from
    skipped: int  # training rows: unreadable records skipped to build it


class Batch(TypedDict):
    token_ids: torch.Tensor  # (B, T_max) int64, right-padded
    loss_mask: torch.Tensor  # (B, T_max) bool
    images: torch.Tensor  # (N, 3, R, R) float32, N = image_counts.sum()
    image_counts: torch.Tensor  # (B,) int64
    streams: torch.Tensor  # (B,) int64 index in STREAMS (-1 for samples that are not training rows)
    skipped: torch.Tensor  # (B,) int64 unreadable records skipped


def render_images(document: Document, resolution: int) -> torch.Tensor:
    """The document's images as ``(n, 3, R, R)`` float32, scaled from [0, 255] to [-1, 1]; an image that cannot
    be decoded raises ``BadRecord``."""
    if not document.images:
        return torch.zeros(0, 3, resolution, resolution)
    pixels = np.stack([to_pixels(image, resolution) for image in document.images])  # (n, R, R, 3) uint8
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2)  # (n, 3, R, R)
    return images.float().div_(127.5).sub_(1.0)


def encode_document(
    document: Document, tokenizer: TextTokenizer, num_image_tokens: int, resolution: int, *, end: bool = True
) -> Sample:
    """``<bos>`` + the text's ids with each ``<image>`` repeated ``num_image_tokens`` times (+ ``<eos>`` if ``end``).

    ``end=False`` leaves the text open, as a prompt for generation.
    """
    ids = np.array([tokenizer.bos_id, *tokenizer.encode(document.text)] + ([tokenizer.eos_id] if end else []))
    is_image = ids == tokenizer.image_id
    if int(is_image.sum()) != len(document.images):
        raise ValueError(f"{int(is_image.sum())} <image> placeholders but {len(document.images)} images")
    repeats = np.where(is_image, num_image_tokens, 1)
    token_ids = torch.from_numpy(np.repeat(ids, repeats))  # (T,)
    loss_mask = torch.from_numpy(np.repeat(~is_image, repeats))
    loss_mask[0] = False  # <bos> is never a target
    return Sample(token_ids=token_ids, loss_mask=loss_mask, images=render_images(document, resolution))


def collate(samples: Sequence[Sample], pad_id: int) -> Batch:
    """Right-pads the texts to the longest one and concatenates the images (see the module docstring)."""
    return Batch(
        token_ids=torch.nn.utils.rnn.pad_sequence(
            [s["token_ids"] for s in samples], batch_first=True, padding_value=pad_id
        ),
        loss_mask=torch.nn.utils.rnn.pad_sequence([s["loss_mask"] for s in samples], batch_first=True),
        images=torch.cat([s["images"] for s in samples]),
        image_counts=torch.tensor([len(s["images"]) for s in samples]),
        streams=torch.tensor([s.get("stream", -1) for s in samples]),
        skipped=torch.tensor([s.get("skipped", 0) for s in samples]),
    )


class PretrainingDataset(Dataset[Sample]):
    """Builds the row a ``RowPlan`` describes: its documents read from their stream, encoded, concatenated
    (each document ``<bos> ... <eos>``), truncated to ``max_tokens``. An unreadable document (``BadRecord``) is
    skipped and counted in the sample's ``skipped``; without packing another document of the stream takes its
    place (``k + 7919``, ``k + 2 * 7919``, ...), so every row holds one. The first reasons are logged."""

    def __init__(
        self,
        streams: Mapping[str, Stream],
        tokenizer: TextTokenizer,
        *,
        num_image_tokens: int,
        resolution: int,
        max_tokens: int,
    ) -> None:
        self.streams, self.tokenizer = dict(streams), tokenizer
        self.num_image_tokens, self.resolution, self.max_tokens = num_image_tokens, resolution, max_tokens
        self.reported = 0

    def __getitem__(self, plan: RowPlan) -> Sample:  # type: ignore[override]
        samples, skipped = [], plan.skipped
        for index in plan.documents:
            sample, misses = self._encoded(plan.stream, index, substitute=len(plan.documents) == 1)
            skipped += misses
            if sample is not None:
                samples.append(sample)
        row = concatenate(samples) if samples else empty_sample(self.tokenizer, self.resolution)
        row = truncate(row, self.max_tokens, self.tokenizer.image_id, self.num_image_tokens)
        return Sample(**row, stream=STREAMS.index(plan.stream), skipped=skipped)  # type: ignore[typeddict-item]

    def _encoded(self, stream: str, index: int, substitute: bool) -> tuple[dict | None, int]:
        for attempt in range(MAX_CONSECUTIVE_BAD if substitute else 1):
            try:
                document = self.streams[stream].document(index + attempt * SUBSTITUTE_STRIDE)
                return dict(encode_document(document, self.tokenizer, self.num_image_tokens, self.resolution)), attempt
            except BadRecord as exc:
                self._report(exc)
        if substitute:
            raise RuntimeError(f"{stream}: {MAX_CONSECUTIVE_BAD} unreadable documents in a row; is the data broken?")
        return None, 1

    def _report(self, problem: BadRecord) -> None:
        if self.reported < REPORTED_SKIPS:
            LOGGER.warning("skipped a bad record: %s", problem)
            self.reported += 1


SUBSTITUTE_STRIDE = 7919  # a prime: substitutes come from elsewhere in the stream, not the next neighbours
REPORTED_SKIPS = 5
LOGGER = logging.getLogger("mm1core.data")


def concatenate(samples: Sequence[dict]) -> dict:
    return {
        "token_ids": torch.cat([s["token_ids"] for s in samples]),
        "loss_mask": torch.cat([s["loss_mask"] for s in samples]),
        "images": torch.cat([s["images"] for s in samples]),
    }


def empty_sample(tokenizer: TextTokenizer, resolution: int) -> dict:
    """``<bos> <eos>``: a row whose every document was unreadable (rare; it still trains on nothing much)."""
    return {
        "token_ids": torch.tensor([tokenizer.bos_id, tokenizer.eos_id]),
        "loss_mask": torch.tensor([False, True]),
        "images": torch.zeros(0, 3, resolution, resolution),
    }


def truncate(row: dict, max_tokens: int, image_id: int, num_image_tokens: int) -> dict:
    """Cuts a row to ``max_tokens``, never inside an image's token run (its image is dropped with it)."""
    token_ids = row["token_ids"]
    if len(token_ids) <= max_tokens:
        return row
    cut = max_tokens
    while cut > 0 and token_ids[cut - 1] == image_id and token_ids[cut] == image_id:
        cut -= 1  # back to the start of the run the cut falls into
    kept_images = int((token_ids[:cut] == image_id).sum()) // num_image_tokens
    return {"token_ids": token_ids[:cut], "loss_mask": row["loss_mask"][:cut], "images": row["images"][:kept_images]}
