"""Token and image tensors for training and evaluation: a map-style dataset over the embedded world, and collate.

A document's text becomes ``<bos> ... <eos>`` ids in which every ``<image>`` is expanded into ``num_tokens``
copies of the image token id: the positions the model later fills with that image's connector outputs
(MM1 Sec. 3.2). The loss mask marks the tokens that are prediction *targets*: text tokens only, never image
tokens, ``<bos>`` or padding.

Shapes (``T`` tokens, ``n`` images in a sample, ``N`` images in a batch, ``R`` the resolution):
- ``Sample``: ``token_ids`` (T,) int64, ``loss_mask`` (T,) bool, ``images`` (n, 3, R, R) float32 in [-1, 1].
- ``Batch``: ``token_ids`` (B, T_max) right-padded with ``<pad>``, ``loss_mask`` (B, T_max), ``images``
  (N, 3, R, R) flat, in the order the images appear in the batch read row by row, ``image_counts`` (B,).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from mm1core.data.tokenizer import Tokenizer
from mm1core.data.world import Document, Split, pretraining_document, render


class Sample(TypedDict):
    token_ids: torch.Tensor  # (T,) int64
    loss_mask: torch.Tensor  # (T,) bool: the token is a loss target
    images: torch.Tensor  # (n, 3, R, R) float32 in [-1, 1]


class Batch(TypedDict):
    token_ids: torch.Tensor  # (B, T_max) int64, right-padded
    loss_mask: torch.Tensor  # (B, T_max) bool
    images: torch.Tensor  # (N, 3, R, R) float32, N = image_counts.sum()
    image_counts: torch.Tensor  # (B,) int64


def render_images(document: Document, resolution: int) -> torch.Tensor:
    """The document's scenes as ``(n, 3, R, R)`` float32, scaled from [0, 255] to [-1, 1]."""
    if not document.images:
        return torch.zeros(0, 3, resolution, resolution)
    pixels = np.stack([render(scene, resolution) for scene in document.images])  # (n, R, R, 3) uint8
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2)  # (n, 3, R, R)
    return images.float().div_(127.5).sub_(1.0)


def encode_document(
    document: Document, tokenizer: Tokenizer, num_image_tokens: int, resolution: int, *, end: bool = True
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
    )


class PretrainingDataset(Dataset[Sample]):
    """``length`` pre-training samples of the embedded world, generated on access (MM1 Sec. 3.3 mixture).

    Item ``i`` is ``pretraining_document(seed, i, ...)``: deterministic, random-access, and never repeated
    within ``length``, so a run of ``max_steps * batch_size`` samples sees each exactly once.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        seed: int,
        mixture: Mapping[str, float],
        max_images: int,
        num_image_tokens: int,
        resolution: int,
        length: int,
        split: Split = Split.TRAIN,
    ) -> None:
        self.tokenizer, self.seed, self.mixture, self.max_images = tokenizer, seed, dict(mixture), max_images
        self.num_image_tokens, self.resolution, self.length, self.split = num_image_tokens, resolution, length, split

    def __len__(self) -> int:
        return self.length

    def document(self, index: int) -> Document:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return pretraining_document(self.seed, index, self.mixture, self.max_images, self.split)

    def __getitem__(self, index: int) -> Sample:
        return encode_document(self.document(index), self.tokenizer, self.num_image_tokens, self.resolution)
